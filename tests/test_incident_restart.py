"""Clocks are persisted deadlines: kill -9 neither loses nor double-fires a breach."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Subscriber, wait_for
from tests.gateways import api_url, healthy, start_gateway


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_breach_due_while_down_fires_once_at_start(
    gateway_env, broker, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        gateway_env["GATEWAY_STORE_URL"] = request.getfixturevalue("pg_url")
    env = gateway_env | {
        "GATEWAY_ARRIVAL_LIMIT_S": "3",
        "GATEWAY_ARRIVAL_WARNING_S": "3",
        "GATEWAY_TOKENS": "dispatcher:tok-0123456789abcdefghijklmn",
        "GATEWAY_TSDB_URL": "",
    }
    auth = {"Authorization": "Bearer tok-0123456789abcdefghijklmn"}
    alerts = Subscriber(broker.url, "dispatch/alerts")
    gw = start_gateway(env, tmp_path / "gw.log")
    wait_for(lambda: healthy(env))
    r = httpx.post(
        f"{api_url(env)}/incidents",
        headers=auth,
        json={"elevator_id": "K1", "kind": "entrapment", "source": "phone"},
    )
    assert r.status_code == 201
    incident_id = r.json()["id"]
    gw.send_signal(signal.SIGKILL)
    gw.wait()
    time.sleep(3.5)  # the deadline passes while the gateway is down

    gw = start_gateway(env, tmp_path / "gw.log")
    try:
        wait_for(lambda: healthy(env))
        wait_for(
            lambda: (
                httpx.get(f"{api_url(env)}/incidents/{incident_id}", headers=auth).json()["sla"]
                == "breached"
            )
        )

        def breaches() -> list[dict[str, object]]:
            return [
                m
                for m in (json.loads(p) for _t, p in alerts.messages)
                if m["incident_id"] == incident_id and m["type"] == "breach"
            ]

        wait_for(lambda: len(breaches()) == 1)
    finally:
        gw.send_signal(signal.SIGKILL)
        gw.wait()

    # A second restart finds the breach done: nothing fires again.
    gw = start_gateway(env, tmp_path / "gw.log")
    try:
        wait_for(lambda: healthy(env))
        time.sleep(1.0)  # several ticks
        incident = httpx.get(f"{api_url(env)}/incidents/{incident_id}", headers=auth).json()
        assert [e["what"] for e in incident["timeline"]].count(
            "breach: arrival limit passed; escalated to level 2 and the regulator"
        ) == 1
        assert len(breaches()) == 1
    finally:
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(timeout=20) == 0
    alerts.close()
