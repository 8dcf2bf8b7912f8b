"""`elevator-gateway demo` end to end, in a subprocess: it starts with its fleet registered
(the public page of a car shows its address, the fleet lists every car), the report command
its banner prints reads its data, an entrapment incident appears through the API within the
promised two minutes, and SIGTERM to its whole process group (as `timeout` or a closing
terminal sends it, its fleet processes included) stops it with exit 0 and nothing left."""

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
        env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        token = wait_for(lambda: _token(tmp_path / "demo.log"), timeout=60)
        api = f"http://127.0.0.1:{port}/api"
        auth = {"Authorization": f"Bearer {token}"}
        public = httpx.get(f"http://127.0.0.1:{port}/e/RES0001", timeout=5)
        assert public.status_code == 200
        assert "成都市" in public.text and "028-8555-" in public.text
        fleet = httpx.get(f"{api}/fleet", headers=auth, timeout=5).json()
        assert fleet["counts"]["elevators"] == 20
        assert all(e["address"] for e in fleet["elevators"])
        report = _banner_report(tmp_path / "demo.log", env)
        # It read the demo's store (an empty one would know no company).
        assert report.returncode == 0 and "Tardy Lifts Ltd" in report.stdout, report.stderr

        def entrapments() -> list[dict[str, object]]:
            r = httpx.get(f"{api}/incidents", params={"state": "all"}, headers=auth, timeout=5)
            return [i for i in r.json() if i["kind"] == "entrapment"]

        found = wait_for(entrapments, timeout=120, interval=1)
        assert found[0]["deadline_at"] and found[0]["source"] == "telemetry"
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        try:
            code = demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)  # hung: fail, leaving nothing behind
            raise
    log = (tmp_path / "demo.log").read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert wait_for(lambda: not _alive_in_group(demo.pid), timeout=10)


def _alive_in_group(pgid: int) -> list[str]:
    """Processes of the group still running (zombies aside): the demo's broker, its fleets."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(stat.parent.name)
    return alive


def _banner_report(log: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The first `elevator-gateway report` command the banner prints, run as printed."""

    def printed() -> str | None:
        lines = log.read_text().splitlines()
        return next((s for s in lines if "elevator-gateway report" in s), None)

    line = wait_for(printed)
    store, command = line.split(maxsplit=1)
    name, value = store.split("=", 1)
    args = command.split()[1:]  # the console script is `python -m gateway` here
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=env | {name: value, "COLUMNS": "200"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _token(log: Path) -> str | None:
    match = re.search(r"dispatcher\s+token (\S+)", log.read_text(errors="replace"))
    return match.group(1) if match else None
