"""The ledger of the fault suites: every frame the broker acknowledged to the publishers,
compared with what the time-series store holds and what the dead letter records.

A row says, for one fault: published, acknowledged, stored (distinct acknowledged frames in
the store), duplicates (copies beyond the first), dead-lettered (per reason) and lost
(acknowledged, neither stored nor dead-lettered). `record` appends the row to the JSON-lines
file named by `GATEWAY_FAULTS_REPORT`, for `bench/faults.py`'s table.

Also here: `StoreProxy`, an HTTP proxy in front of VictoriaMetrics that answers as a store
under fault would (refusing some points with a 4xx, hanging, down), and `publish_acked`, a
burst publisher that knows which frames the broker acknowledged.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.services import VictoriaMetrics, free_port

Key = tuple[str, int]  # (elevator_id, seq)

_LINE_SEQ = re.compile(r"[ ,]seq=(\d+)i")

# Faults run short in CI, at their full length through bench/faults.py.
FULL = os.environ.get("GATEWAY_LEDGER_FULL") == "1"


def lasting(in_ci_s: float, full_s: float) -> float:
    return full_s if FULL else in_ci_s


@dataclass
class Row:
    fault: str
    published: int
    acknowledged: int
    stored: int
    duplicates: int
    dead_lettered: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    note: str = ""


def reconcile(
    fault: str,
    published: int,
    acked: Iterable[Key],
    stored: dict[str, list[float]],
    dead: Iterable[tuple[str, Key]],
    note: str = "",
) -> Row:
    """The row for `fault`: `stored` is the store's seqs per elevator (copies included),
    `dead` the dead letter's (reason, frame) pairs."""
    acked = set(acked)
    copies = Counter((eid, int(seq)) for eid, seqs in stored.items() for seq in seqs)
    dead_keys: dict[Key, str] = {key: reason for reason, key in dead}
    stored_acked = {k for k in acked if k in copies}
    return Row(
        fault=fault,
        published=published,
        acknowledged=len(acked),
        stored=len(stored_acked),
        duplicates=sum(n - 1 for k, n in copies.items() if k in acked),
        dead_lettered=dict(Counter(dead_keys[k] for k in acked if k in dead_keys)),
        lost=len(acked - stored_acked - dead_keys.keys()),
        note=note,
    )


def record(row: Row) -> Row:
    path = os.environ.get("GATEWAY_FAULTS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(asdict(row)) + "\n")
    return row


def dead_letter_keys(rows: Iterable[dict[str, Any]]) -> list[tuple[str, Key]]:
    """(reason, frame) of the dead letter's records of frames: a refused message's JSON, or
    the line the store refused."""
    out = []
    for r in rows:
        payload = bytes(r["payload"])
        if r["reason"] == "tsdb_refused":
            m = _LINE_SEQ.search(payload.decode())
            seq = int(m.group(1)) if m else None
        else:
            try:
                seq = json.loads(payload).get("seq")
            except (ValueError, AttributeError):
                seq = None
        if r["elevator_id"] and isinstance(seq, int):
            out.append((r["reason"], (r["elevator_id"], seq)))
    return out


def stored_seqs(
    vm: VictoriaMetrics, prefix: str, expect: set[Key], timeout: float = 40
) -> dict[str, list[float]]:
    """The store's seqs per elevator under `prefix`, once every key of `expect` is there
    (or the time is up: the ledger then shows what is lost)."""
    deadline = time.monotonic() + timeout
    while True:
        stored = vm.values("elevator_status_seq", prefix)
        have = {(e, int(s)) for e, seqs in stored.items() for s in seqs}
        if expect <= have or time.monotonic() > deadline:
            return stored
        time.sleep(0.5)


def publish_acked(url: str, messages: list[tuple[str, bytes, Key]], window: int = 2000) -> set[Key]:
    """Publish at QoS 1 as fast as the broker acknowledges; the frames it acknowledged."""
    host, port = url.removeprefix("mqtt://").split(":")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="ledger-" + uuid.uuid4().hex[:8])
    client.max_inflight_messages_set(window)
    by_mid: dict[int, Key] = {}
    acked: set[Key] = set()
    client.on_publish = lambda _c, _u, mid, _rc, _p: acked.add(by_mid[mid])
    client.connect(host, int(port))
    for n, (topic, payload, key) in enumerate(messages, 1):
        by_mid[client.publish(topic, payload, qos=1).mid] = key
        if n % 200 == 0:
            client.loop(0)
            while n - len(acked) > window:
                client.loop(0.01)
    deadline = time.monotonic() + 30
    while len(acked) < len(messages) and time.monotonic() < deadline:
        client.loop(0.01)
    client.disconnect()
    return acked


Refuse = Callable[[str], bool]  # a line the store would refuse


class StoreProxy:
    """VictoriaMetrics behind a proxy that can misbehave as a real store does:

    - `refuse(status, pred)`: a write holding a line for which `pred` is true is answered
      `status` (InfluxDB's 400 for a type conflict, 422 for a point beyond the retention)
      and nothing of it is written, as InfluxDB does for a bad batch;
    - `hang()`: writes get no answer until `release()`, then a 503, unwritten (the client
      has given up on them long before);
    - `down()`: 503 at once until `release()`.
    """

    def __init__(self, vm: VictoriaMetrics) -> None:
        self._vm = vm
        self._refusals: list[tuple[int, Refuse]] = []
        self._mode = "ok"
        self._released = threading.Event()
        self.refused_requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real store
            disable_nagle_algorithm = True  # headers and body in separate writes

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, text = proxy._answer(self.path, self.headers, body)
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_args: object) -> None:
                pass

        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def refuse(self, status: int, pred: Refuse) -> None:
        self._refusals.append((status, pred))

    def release_refusals(self) -> None:
        self._refusals.clear()

    def hang(self) -> None:
        self._released.clear()
        self._mode = "hang"

    def down(self) -> None:
        self._released.clear()
        self._mode = "down"

    def release(self) -> None:
        self._mode = "ok"
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, path: str, headers: Any, body: bytes) -> tuple[int, str]:
        if self._mode == "hang":
            self._released.wait(120)
            return 503, "store was not answering"
        if self._mode == "down":
            return 503, "store down"
        text = body.decode()
        for status, pred in self._refusals:
            bad = [n for n, line in enumerate(text.split("\n"), 1) if line and pred(line)]
            if bad:
                self.refused_requests += 1
                return status, json.dumps({"code": "invalid", "message": f"line {bad[0]} refused"})
        r = httpx.post(
            self._vm.url + path,
            content=body,
            headers={"Content-Type": headers.get("Content-Type", "text/plain")},
            timeout=30,
        )
        return r.status_code, r.text
