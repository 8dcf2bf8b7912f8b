"""Gateway processes for the tests: `python -m gateway run` (or `api`) on a given environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx


def start_gateway(env: dict[str, str], log: Path, command: str = "run") -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - the child keeps it for its whole life
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", command],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=log.parent,
    )


def api_url(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['GATEWAY_HTTP_PORT']}/api"


def healthy(env: dict[str, str], key: str = "broker") -> bool:
    """The process answers its health check with `key` true (the broker, for a gateway)."""
    try:
        return httpx.get(f"{api_url(env)}/health", timeout=2).json()[key] is True
    except (httpx.HTTPError, ValueError):
        return False
