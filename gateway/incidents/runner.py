"""The incidents' own thread: everything that waits on the relational store, off the pipeline.

The pipeline thread decodes frames and runs the rules; what the incidents must do with them
(the black box, telemetry on open incidents, the alerts the rules raised, the ticker) and
the episodes (gateway/episodes.py) are handed over here, one list per round. A database
that stops answering for a while holds this thread only: frames go on being processed and
alerts raised. Alerts go ahead of the frames queued before them, so those raised meanwhile
are stored, in order, as soon as it answers, not behind the seconds of frames that piled up
as well. That is safe: each elevator's frames stay in order, the black box is read by time
(`BlackBox.recent`), and a frame of the alert's elevator that it overtook reaches the new
incident as its telemetry, which is judged by time too. An alert the store cannot take
(STORE_UNAVAILABLE) is tried again until it can: the rules raise it once.
"""

from __future__ import annotations

import operator
import queue
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final, TypeVar

import structlog

from gateway import metrics
from gateway.episodes import Recorder
from gateway.frames import Frame
from gateway.incidents.service import IncidentService
from gateway.rules import Alert
from gateway.store import STORE_UNAVAILABLE

log = structlog.get_logger(__name__)

_RETRY_S: Final = 0.5
_STOP: Final = object()
_A = TypeVar("_A", Alert, list[Alert])


class Tick:
    """Fire the incidents' clocks due by `now`."""

    __slots__ = ("now",)

    def __init__(self, now: datetime) -> None:
        self.now = now


class Forget:
    """Drop the black box of elevators long silent."""

    __slots__ = ("elevator_ids",)

    def __init__(self, elevator_ids: Sequence[str]) -> None:
        self.elevator_ids = elevator_ids


# What the pipeline hands over: a frame, an alert, a tick, a forget, or an Event to set once
# everything before it is done and the black box written (the batch it ends may be
# acknowledged then). Alerts only ever move earlier, so that still holds.
Work = Frame | Alert | Tick | Forget | threading.Event


class IncidentRunner:
    def __init__(
        self, incidents: IncidentService, episodes: Recorder, stopping: threading.Event
    ) -> None:
        self._incidents = incidents
        self._episodes = episodes
        self._stopping = stopping  # set: an alert the store cannot take is not retried
        self._inbox: queue.SimpleQueue[list[Work] | object] = queue.SimpleQueue()
        self._alerts: queue.SimpleQueue[list[Alert]] = queue.SimpleQueue()  # ahead of _inbox
        self._ticks_waiting = 0  # ticks handed over and not done: one is enough
        self._alerts_waiting = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="incidents", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def hand_over(self, work: list[Work]) -> None:
        """Queue `work`, its alerts ahead of everything queued (called by the pipeline thread
        only)."""
        if not work:
            return
        if alerts := operator.countOf(map(type, work), Alert):  # in C: mostly frames
            with self._lock:
                self._alerts_waiting += alerts
                metrics.ALERTS_WAITING_FOR_STORE.set(self._alerts_waiting)
            self._alerts.put([w for w in work if type(w) is Alert])
            work = [w for w in work if type(w) is not Alert]  # (sent even if empty: it wakes)
        self._inbox.put(work)

    def tick(self, now: datetime) -> None:
        """Queue a tick, unless one is still waiting (it will see every clock due by then)."""
        with self._lock:
            if self._ticks_waiting:
                return
            self._ticks_waiting += 1
        self._inbox.put([Tick(now)])

    def stop(self) -> None:
        """Finish what was handed over (an alert the store cannot take is no longer retried
        once `stopping` is set), then stop."""
        self._inbox.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        consumers = (self._incidents.on_frame, self._episodes.observe)
        while (work := self._inbox.get()) is not _STOP:
            self._store_alerts()  # those queued with this list and any queued since
            for item in work:  # type: ignore[attr-defined]
                if isinstance(item, Frame):  # nearly every item: no call to `_do` for it
                    for consume in consumers:  # each on its own: one failing spares the other
                        try:
                            consume(item)
                        except Exception:
                            metrics.CONSUMER_ERRORS.inc()
                            log.exception("incident_frame_failed", elevator_id=item.elevator_id)
                else:
                    self._do(item)

    def _do(self, item: Work) -> None:
        if isinstance(item, Tick):
            with self._lock:
                self._ticks_waiting -= 1
            try:
                self._incidents.tick(item.now)
                self._episodes.tick(item.now)
            except Exception:
                metrics.TICK_ERRORS.inc()
                log.exception("incident_tick_failed")
        elif isinstance(item, Forget):
            self._incidents.forget(item.elevator_ids)
            self._episodes.forget(item.elevator_ids)
        else:
            self._incidents.flush_frames()
            self._episodes.flush()
            item.set()

    def _store_alerts(self) -> None:
        """Every alert waiting: together when there are several (they waited for the
        database, say: see IncidentService.on_alerts), one by one if that fails for a bug."""
        alerts: list[Alert] = []
        while True:
            try:
                alerts += self._alerts.get_nowait()
            except queue.Empty:
                break
        if not alerts:
            return
        if len(alerts) == 1 or not self._stored(self._incidents.on_alerts, alerts):
            for alert in alerts:
                self._stored(self._incidents.on_alert, alert)
        with self._lock:
            self._alerts_waiting -= len(alerts)
            metrics.ALERTS_WAITING_FOR_STORE.set(self._alerts_waiting)

    def _stored(self, store: Callable[[_A], None], alerts: _A) -> bool:
        """`store(alerts)`, again every 0.5 s while the database cannot take it (until
        stopping); False for any other failure (a bug, not the store: logged and counted)."""
        while True:
            try:
                store(alerts)
                return True
            except STORE_UNAVAILABLE as exc:
                if self._stopping.is_set():
                    log.error("alert_not_stored_at_stop", alerts=repr(alerts)[:300])
                    return True
                log.warning("alert_waits_for_store", error=str(exc)[:300])
                self._stopping.wait(_RETRY_S)
            except Exception:
                metrics.CONSUMER_ERRORS.inc()
                log.exception("alert_failed", alerts=repr(alerts)[:300])
                return False
