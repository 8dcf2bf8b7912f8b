"""Offline policy (issue 21): silence is an alarm for registered elevators and ones heard
recently, not for any id that was once a retained `online` state; elevators long unheard
are forgotten; unregistered ids are counted. Real Mosquitto; the clock moved by hand."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import REGISTRY

from gateway.app import Gateway
from gateway.clock import FixedClock
from gateway.settings import Settings
from gateway.store import open_store
from tests.conftest import Broker, Device, Subscriber, status_frame, wait_for

TICKS = 0.3  # real seconds: many ticks of the worker (every 20 ms) after the clock moved


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_offline_alarms_for_registered_and_recently_heard_only_then_state_is_evicted(
    gateway_settings: Callable[..., Settings], device: Device, broker: Broker, prefix: str
) -> None:
    registered, heard, ghost = f"{prefix}-reg", f"{prefix}-heard", f"{prefix}-ghost"
    settings = gateway_settings(
        tsdb_url="", tick_interval_s=0.02, offline_heard_within_h=1, evict_after_h=2
    )
    store = open_store(settings.store_url)
    store.put_elevator(registered, {"site": "Tower 1"}, datetime.now(UTC))
    store.close()
    alerts = Subscriber(broker.url, "dispatch/alerts")
    clock = FixedClock(datetime.now(UTC))

    def offline() -> set[str]:
        found = (json.loads(p) for _t, p in alerts.messages)
        return {a["elevator_id"] for a in found if a["kind"] == "offline"}

    not_alarmed = _metric("gateway_offline_not_alarmed_total")
    evicted = _metric("gateway_elevators_evicted_total")
    with Gateway(settings, clock) as gw:
        assert gw.session.wait_connected(10)
        # Two cars that were never more than a retained "online" (a car taken away long
        # ago); one of them is in the registry. A third sends one status frame.
        for eid in (registered, ghost):
            device.publish(f"elevators/{eid}/online", b"1")
        device.publish(f"elevators/{heard}/status", status_frame(heard, 0))
        wait_for(lambda: gw.incidents.last_frame(heard) and gw.pipeline.online(ghost))
        wait_for(lambda: gw.pipeline.online(registered))
        clock.advance(31)
        wait_for(lambda: offline() == {registered, heard})
        wait_for(lambda: _metric("gateway_offline_not_alarmed_total") == not_alarmed + 1)
        clock.advance(30)  # the first sweep: two tracked ids are not in the registry
        wait_for(lambda: _metric("gateway_unregistered_elevators") == 2)

        clock.advance(2 * 3600)
        wait_for(lambda: _metric("gateway_elevators_evicted_total") == evicted + 3)
        assert _metric("gateway_unregistered_elevators") == 0
        # The black box is forgotten on the incidents' thread, a moment after the count.
        wait_for(lambda: gw.incidents.last_frame(heard) is None)
        assert gw.pipeline.online(ghost) is None
        assert list(gw.rules.tracked()) == []
        time.sleep(TICKS)
        assert offline() == {registered, heard}  # nothing more was raised
    alerts.close()
