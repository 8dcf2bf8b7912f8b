"""Episodes: each elevator's compliance facts, recorded from the stream as they happen.

An episode is a span of one elevator in one state: a `maintenance` or `inspection` session
and `out_of_service` (the car's `mode`), `power_loss` (`power` battery or off), `offline`
(its device's `online` 0, until 1); or a moment: `alarm_test` (an `ALARM_TEST` event raised,
the alarm device's automatic test call). The compliance lists read these rows, so they answer
the same whatever the time-series store (embedded, InfluxDB, VictoriaMetrics).

`Tracker` keeps the open episodes in memory and changes something only when a state
changes, so a periodic frame costs a lookup or two. `Recorder` runs it on the incidents'
thread (off the pipeline's) and writes its changes once per batch, before the batch is
acknowledged; it starts from the open episodes in the store, so an episode open at a crash
goes on, or is closed, from the next frames, and a replayed frame rewrites the same row.

Times: status and event frames at device time, as the telemetry stores them (a backlog the broker
kept across a restart keeps its times); `online` changes at receive time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final

import structlog

from gateway.frames import EventBody, Frame, StatusBody
from gateway.store import Store
from gateway.store.records import Episode

log = structlog.get_logger(__name__)

# A session whose device falls silent for longer than this ends at its last frame (we cannot
# see past it); the next frame in the mode starts another.
SESSION_GAP: Final = timedelta(minutes=5)
# An open episode's `last_seen_at` is written again once it is this much behind (not with
# every frame): what a crash can lose of a silent session's end.
SEEN_EVERY: Final = timedelta(minutes=1)
SYNC_EVERY: Final = timedelta(minutes=1)

_GAP_KINDS: Final = frozenset({"maintenance", "inspection"})
_MODE_KINDS: Final = _GAP_KINDS | {"out_of_service"}  # each mode the kind of the same name
_STATUS_KINDS: Final = _MODE_KINDS | {"power_loss"}
# The kinds a status frame shows, by (mode, power): one lookup per frame.
_SHOWN: Final = {
    (mode, power): frozenset(
        k for k in (mode, "power_loss" if power != "mains" else None) if k in _STATUS_KINDS
    )
    for mode in ("normal", "inspection", "maintenance", "fire", "independent", "out_of_service")
    for power in ("mains", "battery", "off")
}


class Tracker:
    """Open episodes per elevator; `observe` returns the episodes a frame opened, closed or
    moved on (their new state), usually none."""

    def __init__(self, open_episodes: Iterable[Episode] = ()) -> None:
        self._open: dict[str, dict[str, Episode]] = {}
        self._seen: dict[str, datetime] = {}  # newest status frame, of elevators with open ones
        self.adopt(open_episodes)

    def adopt(self, open_episodes: Iterable[Episode]) -> None:
        """Take these as the open episodes (those in the store), keeping what is newer here."""
        fresh: dict[str, dict[str, Episode]] = {}
        for e in open_episodes:
            mine = self._open.get(e.elevator_id, {}).get(e.kind)
            keep = mine if mine is not None and mine.started_at == e.started_at else e
            fresh.setdefault(e.elevator_id, {})[e.kind] = keep
        seen = {}
        for eid, kinds in fresh.items():
            stored = max(e.last_seen_at for e in kinds.values())
            seen[eid] = max(stored, self._seen.get(eid, stored))
        self._open, self._seen = fresh, seen

    def observe(self, frame: Frame) -> list[Episode]:
        body = frame.body
        if body is None:
            return self._online(frame.elevator_id, bool(frame.online), frame.received_at)
        if type(body) is not StatusBody:
            return self._event(frame.elevator_id, body)
        shown = _SHOWN[body.mode, body.power]
        car = self._open.get(frame.elevator_id)
        if car is None and not shown:
            return []  # the usual frame: nothing open, nothing to open
        return self._status(frame.elevator_id, shown, body.ts, car or {})

    def _status(
        self, eid: str, shown: frozenset[str], at: datetime, car: dict[str, Episode]
    ) -> list[Episode]:
        last = self._seen.get(eid)
        if last is not None and at < last:
            return []  # a late frame (reordered): the state it shows is over
        silent = last is not None and at - last > SESSION_GAP
        changed = []
        for kind, episode in list(car.items()):
            if kind not in _STATUS_KINDS:
                continue
            if kind not in shown or (silent and kind in _GAP_KINDS):
                end = last if silent and kind in _GAP_KINDS and last is not None else at
                changed.append(replace(episode, ended_at=end, last_seen_at=min(end, at)))
                del car[kind]
            elif at - episode.last_seen_at >= SEEN_EVERY:
                car[kind] = replace(episode, last_seen_at=at)
                changed.append(car[kind])
        for kind in shown - car.keys():
            car[kind] = Episode(eid, kind, at, None, at)
            changed.append(car[kind])
        self._settle(eid, car, at)
        return changed

    @staticmethod
    def _event(eid: str, body: EventBody) -> list[Episode]:
        if body.code == "ALARM_TEST" and body.state == "raised":
            return [Episode(eid, "alarm_test", body.ts, body.ts, body.ts)]
        return []

    def _online(self, eid: str, online: bool, at: datetime) -> list[Episode]:
        car = self._open.get(eid, {})
        episode = car.get("offline")
        if online and episode is not None:
            del car["offline"]
            self._settle(eid, car, self._seen.get(eid))
            return [replace(episode, ended_at=at, last_seen_at=at)]
        if not online and episode is None:
            car["offline"] = Episode(eid, "offline", at, None, at)
            self._settle(eid, car, self._seen.get(eid))
            return [car["offline"]]
        return []

    def _settle(self, eid: str, car: dict[str, Episode], seen: datetime | None) -> None:
        """Keep state only for elevators with something open: most cost no memory here."""
        if car:
            self._open[eid] = car
            if seen is not None:
                self._seen[eid] = seen
        else:
            self._open.pop(eid, None)
            self._seen.pop(eid, None)


class Recorder:
    """The tracker on the incidents' thread, its changes written once per batch (`flush`)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._tracker = Tracker(store.open_episodes())
        self._changed: dict[tuple[str, str, datetime], Episode] = {}
        # When each elevator was heard is kept to a day: one write per elevator a day at most.
        self._heard: dict[str, int] = {}  # elevator -> the (UTC ordinal) day last marked
        self._heard_now: dict[str, datetime] = {}
        self._sync_at: datetime | None = None

    def observe(self, frame: Frame) -> None:
        for e in self._tracker.observe(frame):
            self._changed[e.elevator_id, e.kind, e.started_at] = e
        day = frame.received_at.toordinal()
        if self._heard.get(frame.elevator_id) != day:
            self._heard[frame.elevator_id] = day
            self._heard_now[frame.elevator_id] = frame.received_at

    def flush(self) -> None:
        """Write the changes since the last call; kept for the next call if the store fails."""
        try:
            self._store.save_episodes(list(self._changed.values()))
            self._store.mark_heard(self._heard_now)
        except Exception:
            log.exception("episodes_not_stored", waiting=len(self._changed))
            return
        self._changed.clear()
        self._heard_now = {}

    def tick(self, now: datetime) -> None:
        """Now and then take the store's open episodes (another gateway of a cluster may have
        opened or closed some of the elevators this one now has)."""
        if self._sync_at is not None and now < self._sync_at:
            return
        self.flush()
        if not self._changed:
            self._tracker.adopt(self._store.open_episodes())
        self._sync_at = now + SYNC_EVERY

    def forget(self, elevator_ids: Sequence[str]) -> None:
        """Elevators long silent (their open episodes stay open, in the store and here)."""
        for eid in elevator_ids:
            self._heard.pop(eid, None)
