"""`elevator-gateway demo` end to end, in a subprocess: it starts, an entrapment incident
appears through the API within the promised two minutes, and SIGINT stops it with exit 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import free_port, wait_for


def test_demo_shows_an_entrapment_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent), COLUMNS="100")
    out = open(tmp_path / "demo.log", "w+b")  # noqa: SIM115 - the child writes it all along
    demo = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--elevators", "20", "--port", str(port),
         "--data-dir", str(tmp_path / "data")],
        env=env, stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        token = wait_for(lambda: _token(tmp_path / "demo.log"), timeout=60)
        api = f"http://127.0.0.1:{port}/api"
        auth = {"Authorization": f"Bearer {token}"}

        def entrapments() -> list[dict[str, object]]:
            r = httpx.get(f"{api}/incidents", params={"state": "all"}, headers=auth, timeout=5)
            return [i for i in r.json() if i["kind"] == "entrapment"]

        found = wait_for(entrapments, timeout=120, interval=1)
        assert found[0]["deadline_at"] and found[0]["source"] == "telemetry"
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=60)
    log = (tmp_path / "demo.log").read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def _token(log: Path) -> str | None:
    match = re.search(r"dispatcher\s+token (\S+)", log.read_text(errors="replace"))
    return match.group(1) if match else None
