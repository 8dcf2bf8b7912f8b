"""Clocks are persisted deadlines: kill -9 neither loses nor double-fires a breach."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Subscriber, wait_for


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - the child keeps it for its whole life
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=log.parent,
    )


def _api(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['GATEWAY_HTTP_PORT']}/api"


def _healthy(env: dict[str, str]) -> bool:
    try:
        return httpx.get(f"{_api(env)}/health", timeout=2).json()["broker"] is True
    except (httpx.HTTPError, ValueError):
        return False


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_breach_due_while_down_fires_once_at_start(
    gateway_env, broker, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        gateway_env["GATEWAY_STORE_URL"] = request.getfixturevalue("pg_url")
    env = gateway_env | {
        "GATEWAY_ARRIVAL_LIMIT_S": "3",
        "GATEWAY_ARRIVAL_WARNING_S": "3",
        "GATEWAY_TOKENS": "dispatcher:tok",
        "GATEWAY_TSDB_URL": "",
    }
    auth = {"Authorization": "Bearer tok"}
    alerts = Subscriber(broker.url, "dispatch/alerts")
    gw = _start(env, tmp_path / "gw.log")
    wait_for(lambda: _healthy(env))
    r = httpx.post(
        f"{_api(env)}/incidents",
        headers=auth,
        json={"elevator_id": "K1", "kind": "entrapment", "source": "phone"},
    )
    assert r.status_code == 201
    incident_id = r.json()["id"]
    gw.send_signal(signal.SIGKILL)
    gw.wait()
    time.sleep(3.5)  # the deadline passes while the gateway is down

    gw = _start(env, tmp_path / "gw.log")
    try:
        wait_for(lambda: _healthy(env))
        wait_for(
            lambda: (
                httpx.get(f"{_api(env)}/incidents/{incident_id}", headers=auth).json()["sla"]
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
    gw = _start(env, tmp_path / "gw.log")
    try:
        wait_for(lambda: _healthy(env))
        time.sleep(1.0)  # several ticks
        incident = httpx.get(f"{_api(env)}/incidents/{incident_id}", headers=auth).json()
        assert [e["what"] for e in incident["timeline"]].count(
            "breach: arrival limit passed; escalated to level 2 and the regulator"
        ) == 1
        assert len(breaches()) == 1
    finally:
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(timeout=20) == 0
    alerts.close()
