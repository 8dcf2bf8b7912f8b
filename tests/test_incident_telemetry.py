"""Telemetry as arrival evidence and auto-release, the black box, and signed webhooks."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from deploy.verify_webhook import verify
from gateway.app import Gateway
from gateway.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.conftest import Device, free_port, status_frame, wait_for

TOKEN = "tok-0123456789abcdefghijklmn"


class WebhookReceiver:
    """A real HTTP server on loopback that records what is POSTed to it."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()


def test_crew_seen_in_telemetry_then_release_from_telemetry(
    gateway_settings, device: Device, prefix: str
) -> None:
    hook = WebhookReceiver()
    settings = gateway_settings(
        tsdb_url="",
        tokens=f"dispatcher:{TOKEN}",
        alert_webhooks=[hook.url],
        webhook_secret="s3cret",
    )
    eid = f"{prefix}-tel"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    api = f"http://127.0.0.1:{settings.http_port}/api"
    seq = iter(range(1000))

    def send(**fields: object) -> None:
        device.publish(f"elevators/{eid}/status", status_frame(eid, next(seq), **fields))

    with Gateway(settings) as gw:
        assert gw.session.wait_connected(10)
        for floor in (3, 4, 5):
            send(floor=floor, moving=True, occupied=True)
        send(floor=5, moving=False, door_zone=False, occupied=True)
        wait_for(
            lambda: (
                gw.live(eid)["last_frame"] is not None
                and gw.live(eid)["last_frame"]["body"]["seq"] == 3
            )
        )
        r = httpx.post(
            f"{api}/incidents",
            headers=auth,
            json={"elevator_id": eid, "kind": "entrapment", "source": "phone"},
        )
        incident_id = r.json()["id"]

        send(floor=5, moving=False, door_zone=False, occupied=True, mode="inspection")
        wait_for(lambda: _get(api, incident_id)["state"] == "arrived")
        incident = _get(api, incident_id)
        assert incident["arrival_evidence"] == "telemetry" and incident["sla"] == "met"

        send(floor=5, moving=False, door_zone=True, door="open", occupied=False, mode="inspection")
        wait_for(lambda: _get(api, incident_id)["state"] == "released")
        incident = _get(api, incident_id)
        assert datetime.fromisoformat(incident["released_at"]) >= datetime.fromisoformat(
            incident["arrived_at"]
        )
        assert any(e["by"] == "telemetry" for e in incident["timeline"])
        # The black box keeps what the car sent while the incident was open (seq 4 and 5),
        # after the four frames from before it.
        wait_for(lambda: len(gw.store.incident_frames(incident_id)) == 6)
        seqs = [json.loads(f["body"])["seq"] for f in gw.store.incident_frames(incident_id)]
        assert seqs[-2:] == [4, 5]

        # The crew's own report comes later, with an earlier time: both kinds are named.
        earlier = datetime.fromisoformat(incident["opened_at"]).isoformat()
        r = httpx.post(
            f"{api}/incidents/{incident_id}/arrival",
            headers=auth,
            json={"crew_id": "crew-1", "at": earlier},
        )
        assert r.json()["arrival_evidence"] == "reported+telemetry"
        assert r.json()["arrived_at"] == incident["opened_at"]
        assert r.json()["state"] == "released"  # never backward

        # Each change is also a point of the contract's `incident` measurement (written with
        # the next batch, never by the change itself).
        def states() -> list[str]:
            lines = gw.store.telemetry_lines(eid)
            return [
                line.split('state="')[1].split('"')[0]
                for line in lines
                if line.startswith("incident,")
            ]

        wait_for(lambda: states() == ["open", "arrived", "released", "released"])

        frames = httpx.get(f"{api}/incidents/{incident_id}/frames", headers=auth).json()
        opened = datetime.fromisoformat(incident["opened_at"])
        before = [f for f in frames if datetime.fromisoformat(f["received_at"]) < opened]
        during = [f for f in frames if datetime.fromisoformat(f["received_at"]) >= opened]
        assert [f["body"]["seq"] for f in before] == [0, 1, 2, 3]
        assert [f["body"]["mode"] for f in during] == ["inspection", "inspection"]

    wait_for(lambda: hook.received)
    headers, body = hook.received[0]
    timestamp = int(headers[TIMESTAMP_HEADER])
    assert headers[SIGNATURE_HEADER] == sign("s3cret", timestamp, body)
    assert verify("s3cret", headers, body, now=gw.clock.now().timestamp())
    assert json.loads(body)["incident_id"] == incident_id
    hook.close()


def _get(api: str, incident_id: str) -> dict[str, Any]:
    return httpx.get(
        f"{api}/incidents/{incident_id}", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
