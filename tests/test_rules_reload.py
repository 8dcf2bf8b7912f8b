"""Rule reload in a running gateway (what SIGHUP asks for): a broken file is refused and the
old rules stay in force; a good change takes effect. The gateway's clock is moved by hand."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.app import Gateway
from gateway.clock import FixedClock
from gateway.rules import DEFAULT_RULES_DIR
from tests.conftest import Device, status_frame, wait_for

TICKS = 0.3  # real seconds: many ticks of the worker (every 20 ms) after the clock moved


def _kinds(gw: Gateway, elevator_id: str) -> set[str]:
    return {i.kind for i in gw.store.list_incidents(elevator_id=elevator_id, state="all")}


def test_broken_rules_are_refused_and_a_good_change_applies(
    gateway_settings, device: Device, prefix: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULES_DIR, rules, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    clock = FixedClock(datetime.now(UTC))
    settings = gateway_settings(tsdb_url="", rules_dir=rules, tick_interval_s=0.02)
    with Gateway(settings, clock) as gw:
        assert gw.session.wait_connected(10)
        (rules / "offline.yaml").unlink()
        (rules / "broken.yaml").write_text("rules:\n  - id: half\n    condition: door ==\n")
        gw.reload_rules()
        # Refused: the offline rule is still in force, so a silent car is reported.
        first = f"{prefix}-a"
        device.publish(f"elevators/{first}/status", status_frame(first, 0))
        wait_for(lambda: gw.incidents.last_frame(first))
        clock.advance(31)
        wait_for(lambda: "offline" in _kinds(gw, first))

        (rules / "broken.yaml").unlink()
        gw.reload_rules()
        second = f"{prefix}-b"
        device.publish(f"elevators/{second}/status", status_frame(second, 0))
        wait_for(lambda: gw.incidents.last_frame(second))
        clock.advance(61)  # twice the silence window
        time.sleep(TICKS)
        assert "offline" not in _kinds(gw, second)
