"""The rule engine: frames and `now` in, alerts out. Pure: no I/O, no threads, no wall clock.

Per elevator and rule an episode runs idle -> pending (condition holds, waiting out `hold`)
-> firing (one `fire` alert) -> clearing (clear signal held for `clear_hold`) -> idle (one
`clear` alert). A condition that breaks while pending resets the hold; a clear signal that
breaks while clearing keeps the episode firing, so a flapping signal alerts once.

Deadlines sit in two heaps, popped together in deadline order: holds and clear holds as
tuples (in the order set, at the same deadline), and each car's silence timer in the car
itself (every car has one, so it costs no object of its own; at the same deadline, by
elevator id, after the holds: what a hold concluded was heard before the silence). `tick`
costs only what is due, however many elevators are tracked. Times are float epoch seconds
inside.
"""

from __future__ import annotations

import heapq
import itertools
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from gateway.frames import EventBody, Frame, StatusBody
from gateway.rules.expr import SHARED_STATUS, Fn, compile_mask
from gateway.rules.spec import Rule, RuleSet

_CLASS_BITS: Final = {"entrapment": 1, "accident": 2, "fault": 4, "event": 8}
_PENDING, _FIRING, _CLEARING = 0, 1, 2
_NEVER: Final = float("-inf")
_INF: Final = float("inf")
_CYCLE_WINDOW_S: Final = 60.0
_CYCLE_SLOTS: Final = 16  # door openings remembered: door_cycles_60s counts up to this
SITE_RULE: Final = "site_power_cut"
POWER_KIND: Final = "POWER_FAILURE"


@dataclass(frozen=True, slots=True)
class Alert:
    """A rule's condition completed (`fire`) or stopped (`clear`) for one elevator.

    A site-level power cut alert has `rule` "site_power_cut", kind "power_cut", the site as
    `elevator_id` and `group` "site:{site}:power_cut"; entrapment alerts of the cars it
    groups carry the same `group`, and their own POWER_FAILURE alerts are left out.
    """

    action: Literal["fire", "clear"]
    elevator_id: str
    rule: str
    kind: str
    severity: str
    incident_class: str
    at: datetime
    group: str | None = None
    detail: str = ""


class _Compiled:
    """A rule prepared for the hot path."""

    __slots__ = (
        "bit",
        "clear_fn",
        "clear_hold",
        "cond",
        "escalate",
        "hold",
        "id",
        "on_cleared",
        "rule",
    )

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.id = rule.id
        self.cond: Fn = rule.condition.fn
        self.bit = _CLASS_BITS[rule.opens.incident_class]
        self.hold = rule.hold
        self.clear_hold = rule.clear_hold
        self.clear_fn: Fn | None = None if rule.clears in (None, "cleared") else rule.clears.fn  # type: ignore[union-attr]
        self.on_cleared = rule.clears_on_event
        self.escalate = rule.escalate


class _Episode:
    __slots__ = ("deadline", "group", "muted", "phase")

    def __init__(self, phase: int, deadline: float) -> None:
        self.phase = phase
        self.deadline = deadline
        self.group: str | None = None
        self.muted = False  # its fire was covered by a site alert: its clear is too


_FLOATS: dict[float, float] = {}
_FLOATS_KEPT: Final = 4096


def _shared(x: float) -> float:
    """One float object per value (speeds and loads repeat across the fleet), so a car does
    not keep the one its frame came with; up to _FLOATS_KEPT distinct values."""
    if len(_FLOATS) < _FLOATS_KEPT:
        return _FLOATS.setdefault(x, x)
    return _FLOATS.get(x, x)


class _Status:
    """The fields of a status frame in SHARED_STATUS, which conditions read as `car.status`.
    Statuses repeat across the fleet (a car at rest at its floor above all), so the cars in
    one state share one (up to _STATUSES_KEPT distinct): 8 bytes a car, not 80."""

    __slots__ = SHARED_STATUS

    def __init__(self, values: tuple[object, ...]) -> None:
        for name, value in zip(SHARED_STATUS, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a shared status is never changed ({name}): give the car another")


_STATUSES: dict[tuple[object, ...], _Status] = {}
_STATUSES_KEPT: Final = 65536
_STATUS_KEY: Final = operator.attrgetter(*SHARED_STATUS)
# Until a status frame says otherwise: a car at rest, nobody seen.
_AT_REST: Final = _Status(
    tuple(
        {"floor": 0, "moving": False, "direction": "none", "door": "closed", "door_zone": True,
         "occupied": False, "mode": "normal", "alarm_button": False, "power": "mains",
         "safety_circuit": "closed"}[name]
        for name in SHARED_STATUS
    )
)  # fmt: skip


def _status_of(b: StatusBody) -> _Status:
    key = _STATUS_KEY(b)
    status = _STATUSES.get(key)
    if status is None:
        status = _Status(key)
        if len(_STATUSES) < _STATUSES_KEPT:
            _STATUSES[key] = status
    return status


class _Car:
    """What the engine knows of one elevator; the attributes conditions read (the fields in
    SHARED_STATUS through `status`)."""

    __slots__ = (
        "door_cycles_60s",
        "door_moved",
        "door_opens",
        "elevator_id",
        "episodes",
        "last_seen",
        "load_pct",
        "moving_at",
        "occupied_latched",
        "online",
        "power_site",
        "silence_at",
        "speed_mps",
        "status",
        "status_at",
    )
    code = ""  # the event being evaluated: only on an _EventView
    state = ""

    def __init__(self, elevator_id: str) -> None:
        self.elevator_id = elevator_id
        self.status = _AT_REST
        self.speed_mps = 0.0
        self.load_pct = 0.0
        self.occupied_latched = False
        self.door_moved = False  # the door has moved since a passenger was seen behind it
        self.online = False
        # Times of the last status frame and the last one moving: since_moving_s is their
        # difference, read when a condition asks (a float of its own per car otherwise).
        self.status_at = _NEVER
        self.moving_at = _NEVER
        self.door_cycles_60s = 0
        # The openings counted in door_cycles_60s, oldest first; None while there are none.
        self.door_opens: tuple[float, ...] | None = None
        self.last_seen = _NEVER
        # Its silence timer, in RuleEngine._silent while set (silence_at < inf).
        self.silence_at = _INF
        self.power_site: str | None = None  # the site it counts towards while off mains
        self.episodes: dict[str, _Episode] | None = None  # only while a rule is not idle

    def apply_status(self, b: StatusBody, t: float) -> None:
        door_before = self.status.door
        self.status = _status_of(b)
        self.speed_mps, self.load_pct = _shared(b.speed_mps), _shared(b.load_pct)
        self.status_at = t
        # PIR sensors flicker while people stand still: a passenger seen behind a closed
        # door stays until the door has moved (open, opening, closing) and nobody is seen.
        if b.door not in ("closed", "fault"):
            self.door_moved = True
        if b.occupied:
            self.occupied_latched = True
            if b.door in ("closed", "fault"):
                self.door_moved = False
        elif self.door_moved:
            self.occupied_latched = False
        if b.moving:
            self.moving_at = t
        opens = self.door_opens
        if b.door == "open" and door_before != "open":
            # The oldest of more than _CYCLE_SLOTS is forgotten.
            self._recount_cycles(t, sorted((*(opens or ()), t))[-_CYCLE_SLOTS:])
        elif opens is not None and t >= opens[0] + _CYCLE_WINDOW_S:
            self._recount_cycles(t, opens)

    @property
    def status_seen(self) -> bool:
        """A status frame has arrived since the gateway started."""
        return self.status_at != _NEVER

    @property
    def since_moving_s(self) -> float:
        """Seconds since the car last moved, at its last status frame."""
        return _INF if self.status_at == _NEVER else self.status_at - self.moving_at

    def __lt__(self, other: _Car) -> bool:
        """The order of silence timers."""
        return (self.silence_at, self.elevator_id) < (other.silence_at, other.elevator_id)

    def _recount_cycles(self, t: float, opens: Sequence[float]) -> None:
        recent = tuple([x for x in opens if x > t - _CYCLE_WINDOW_S])  # faster than a genexpr
        self.door_cycles_60s = len(recent)
        self.door_opens = recent or None


class _EventView:
    """A car as event rules see it: the car, and the event's `code` and `state` (a car itself
    has none: "" outside events)."""

    __slots__ = ("_car", "code", "state")

    def __init__(self, car: _Car, code: str, state: str) -> None:
        self._car, self.code, self.state = car, code, state

    def __getattr__(self, name: str) -> object:
        return getattr(self._car, name)


class _Site:
    __slots__ = ("grouped", "members")

    def __init__(self) -> None:
        self.members: set[str] = set()
        self.grouped = False


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class RuleEngine:
    def __init__(
        self, rules: RuleSet, site_of: Callable[[str], str | None] = lambda _e: None
    ) -> None:
        self._site_of = site_of
        self._cars: dict[str, _Car] = {}
        self._sites: dict[str, _Site] = {}
        self._heap: list[tuple[float, int, str, str]] = []  # (deadline, seq, car id, rule id)
        self._silent: list[_Car] = []  # cars by silence timer
        self._seq = itertools.count()
        self._heard_all_at = _NEVER  # see `resume`
        self._load(rules)

    def _load(self, rules: RuleSet) -> None:
        self._rules = rules
        compiled = [_Compiled(r) for r in rules.rules]
        self._by_id = {c.id: c for c in compiled}
        self._status = tuple(c for c in compiled if c.rule.stream == "status")
        self._online = tuple(c for c in compiled if c.rule.stream == "online")
        events = [c for c in compiled if c.rule.stream == "event"]
        self._event_any = tuple(c for c in events if c.rule.condition.code is None)
        self._event_by_code: dict[str, tuple[_Compiled, ...]] = {}
        for c in events:
            if c.rule.condition.code is not None:
                code = c.rule.condition.code
                self._event_by_code[code] = (*self._event_by_code.get(code, ()), c)
        # Each rule set's conditions in one call (bit i: its i-th rule's condition holds).
        self._status_levels = compile_mask(
            [(c.rule.condition, 1 << i) for i, c in enumerate(self._status)]
        )
        self._online_levels = compile_mask(
            [(c.rule.condition, 1 << i) for i, c in enumerate(self._online)]
        )
        # The incident classes muted for a car (maintenance, a technician on site...).
        self._mute_mask = compile_mask(
            [(m.condition, sum(_CLASS_BITS[k] for k in set(m.classes))) for m in rules.mutes]
        )
        self._silence = rules.settings.silence

    def replace_rules(self, rules: RuleSet) -> None:
        """Swap in a new rule set; episodes of rules that did not change go on."""
        old = self._by_id
        self._load(rules)
        kept = {i for i, c in self._by_id.items() if i in old and old[i].rule == c.rule}
        for car in self._cars.values():
            if car.episodes:
                car.episodes = {i: e for i, e in car.episodes.items() if i in kept} or None

    # -- input -----------------------------------------------------------------------------
    def observe(self, frame: Frame, now: datetime) -> list[Alert]:
        t = now.timestamp()
        out: list[Alert] = []
        # What fell due before this frame happened first, on every car: a site's grouping
        # must not depend on how often `tick` is called.
        heap, silent = self._heap, self._silent
        if (heap and heap[0][0] <= t) or (silent and silent[0].silence_at <= t):
            self._run_due(t, out)
        car = self._cars.get(frame.elevator_id)
        if car is None:
            car = self._cars[frame.elevator_id] = _Car(frame.elevator_id)
        body = frame.body
        if frame.kind == "online":
            if frame.online:
                self._seen(car, t, out)
            else:
                self._set_online(car, False, t, out)
        elif isinstance(body, StatusBody):
            self._seen(car, t, out)
            car.apply_status(body, t)
            self._track_power(car, t, out)
            self._evaluate(car, self._status, self._status_levels(car), t, out)
        elif isinstance(body, EventBody):
            self._seen(car, t, out)
            self._event(car, body, t, out)
        if car.episodes:
            self._explicit_clears(car, t, out)
        return out

    def tick(self, now: datetime) -> list[Alert]:
        """Fire and clear everything due by `now`."""
        out: list[Alert] = []
        self._run_due(now.timestamp(), out)
        return out

    def resume(self, now: datetime) -> None:
        """Count every car as heard from at `now`, in O(1): while the gateway cannot hear
        (its broker is away) a car's silence says nothing about the car. Each then gets a
        full silence window from `now` before it can be called silent."""
        self._heard_all_at = max(self._heard_all_at, now.timestamp())

    def is_liveness(self, rule_id: str) -> bool:
        """Whether the rule is about the car being online (offline, silence)."""
        return any(c.id == rule_id for c in self._online)

    def last_status_at(self, elevator_id: str) -> datetime | None:
        """When the car last sent a status frame (not a retained `online` state)."""
        car = self._cars.get(elevator_id)
        return None if car is None or car.status_at == _NEVER else _at(car.status_at)

    def tracked(self) -> Iterator[str]:
        return iter(self._cars)

    def evict(self, now: datetime, idle_s: float) -> list[str]:
        """Forget the cars not heard from for `idle_s` with nothing due (an id that published
        once, a car taken out of service): kept, they would add up for good. Returns their
        ids. A car that comes back starts afresh (online, no episodes)."""
        cutoff = now.timestamp() - idle_s
        gone = [
            elevator_id
            for elevator_id, car in self._cars.items()
            if car.last_seen < cutoff
            and car.silence_at == _INF
            and car.power_site is None
            and not (car.episodes and any(e.phase != _FIRING for e in car.episodes.values()))
        ]
        for elevator_id in gone:
            del self._cars[elevator_id]
        return gone

    def _run_due(self, t: float, out: list[Alert]) -> None:
        heap, silent = self._heap, self._silent
        while True:
            hold_due = heap and heap[0][0] <= t
            silence_due = silent and silent[0].silence_at <= t
            if silence_due and not (hold_due and heap[0][0] <= silent[0].silence_at):
                self._silence_due(heapq.heappop(silent), out)
            elif hold_due:
                deadline, _, elevator_id, rule_id = heapq.heappop(heap)
                car = self._cars.get(elevator_id)
                if car is not None:  # (None: a stale entry of a car since evicted)
                    self._expire(car, rule_id, deadline, out)
            else:
                return

    # -- time ------------------------------------------------------------------------------
    def _push(self, deadline: float, elevator_id: str, rule_id: str) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), elevator_id, rule_id))

    def _set_silence_timer(self, car: _Car, deadline: float) -> None:
        car.silence_at = deadline
        heapq.heappush(self._silent, car)

    def _silence_due(self, car: _Car, out: list[Alert]) -> None:
        """A silence timer popped; the car may have been heard from since it was set."""
        deadline, car.silence_at = car.silence_at, _INF
        silent_at = max(car.last_seen, self._heard_all_at) + self._silence
        if not car.online:
            return
        if silent_at > deadline:
            self._set_silence_timer(car, silent_at)  # later, in time order
        else:
            self._set_online(car, False, silent_at, out)

    def _seen(self, car: _Car, t: float, out: list[Alert]) -> None:
        car.last_seen = t
        if not car.online:
            self._set_online(car, True, t, out)
        if car.silence_at == _INF:
            self._set_silence_timer(car, t + self._silence)

    def _set_online(self, car: _Car, online: bool, t: float, out: list[Alert]) -> None:
        if car.online == online:
            return
        car.online = online
        self._evaluate(car, self._online, self._online_levels(car), t, out)

    def _expire(self, car: _Car, rule_id: str, deadline: float, out: list[Alert]) -> None:
        eps = car.episodes
        ep = eps.get(rule_id) if eps else None
        if ep is None or ep.deadline != deadline or ep.phase == _FIRING:
            return  # stale heap entry: the episode moved on
        c = self._by_id[rule_id]
        if ep.phase == _PENDING:
            if c.bit & self._mute_mask(car):
                # Excluded since the hold began (the car emptied, a technician took over):
                # status rules were dropped by that frame, event rules only learn it here.
                self._drop(car, rule_id)
                return
            ep.phase = _FIRING
            self._fire(car, c, ep, deadline, out)
        else:
            self._end(car, c, ep, deadline, out)

    # -- episodes --------------------------------------------------------------------------
    def _evaluate(
        self, car: _Car, rules: tuple[_Compiled, ...], levels: int, t: float, out: list[Alert]
    ) -> None:
        """Status/online rules, given which conditions hold (`levels`, bit i for `rules[i]`).
        Most frames: none holds and no episode runs, and there is nothing to do."""
        eps = car.episodes
        if not levels and not eps:
            return
        mask = self._mute_mask(car)
        for i, c in enumerate(rules):
            level = bool(levels >> i & 1) and not (c.bit & mask)
            if level or (eps and c.id in eps):
                self._level(car, c, level, t, out)
                eps = car.episodes

    def _level(self, car: _Car, c: _Compiled, level: bool, t: float, out: list[Alert]) -> None:
        """A status/online rule's condition was evaluated."""
        ep = car.episodes.get(c.id) if car.episodes else None
        if ep is None:
            if level:
                self._start(car, c, t, out)
        elif ep.phase == _PENDING:
            if not level:
                self._drop(car, c.id)
        elif c.clear_fn is None:
            self._clear_signal(car, c, ep, not level, t, out)

    def _event(self, car: _Car, body: EventBody, t: float, out: list[Alert]) -> None:
        view = _EventView(car, body.code, body.state)
        mask = self._mute_mask(view)
        for c in (*self._event_by_code.get(body.code, ()), *self._event_any):
            ep = car.episodes.get(c.id) if car.episodes else None
            if not (c.bit & mask) and c.cond(view):
                if ep is None:
                    self._start(car, c, t, out)
                elif ep.phase == _CLEARING and c.on_cleared:
                    ep.phase = _FIRING
            elif ep is not None and c.on_cleared and body.state == "cleared":
                if ep.phase == _PENDING:
                    self._drop(car, c.id)  # raised and cleared within the hold: chatter
                else:
                    self._clear_signal(car, c, ep, True, t, out)

    def _explicit_clears(self, car: _Car, t: float, out: list[Alert]) -> None:
        for rule_id, ep in list((car.episodes or {}).items()):
            c = self._by_id[rule_id]
            if c.clear_fn is not None and ep.phase != _PENDING:
                self._clear_signal(car, c, ep, bool(c.clear_fn(car)), t, out)

    def _start(self, car: _Car, c: _Compiled, t: float, out: list[Alert]) -> None:
        if car.episodes is None:
            car.episodes = {}
        ep = car.episodes[c.id] = _Episode(_PENDING, t + c.hold)
        if c.hold:
            self._push(ep.deadline, car.elevator_id, c.id)
        else:
            ep.phase = _FIRING
            self._fire(car, c, ep, t, out)

    def _clear_signal(
        self, car: _Car, c: _Compiled, ep: _Episode, on: bool, t: float, out: list[Alert]
    ) -> None:
        if on and ep.phase == _FIRING:
            ep.phase, ep.deadline = _CLEARING, t + c.clear_hold
            if c.clear_hold:
                self._push(ep.deadline, car.elevator_id, c.id)
            else:
                self._end(car, c, ep, t, out)
        elif not on and ep.phase == _CLEARING:
            ep.phase = _FIRING

    def _drop(self, car: _Car, rule_id: str) -> None:
        assert car.episodes is not None
        del car.episodes[rule_id]
        if not car.episodes:
            car.episodes = None

    def _fire(self, car: _Car, c: _Compiled, ep: _Episode, t: float, out: list[Alert]) -> None:
        rule = c.rule
        severity = rule.opens.severity
        esc = c.escalate
        if esc is not None and car.episodes:
            eps = car.episodes
            if any(i in eps and eps[i].phase != _CLEARING for i in esc.if_active):
                severity = esc.severity
        site = self._sites.get(car.power_site) if car.power_site else None
        if site is not None and site.grouped:
            if rule.opens.kind == POWER_KIND:
                ep.muted = True  # the site-level alert stands for it
                return
            if rule.opens.incident_class == "entrapment":
                ep.group = f"site:{car.power_site}:power_cut"
        out.append(
            Alert("fire", car.elevator_id, c.id, rule.opens.kind, severity,
                  rule.opens.incident_class, _at(t), ep.group, rule.description)
        )  # fmt: skip

    def _end(self, car: _Car, c: _Compiled, ep: _Episode, t: float, out: list[Alert]) -> None:
        self._drop(car, c.id)
        if not ep.muted:
            o = c.rule.opens
            out.append(
                Alert("clear", car.elevator_id, c.id, o.kind, o.severity, o.incident_class,
                      _at(t), ep.group)
            )  # fmt: skip

    # -- site power cut --------------------------------------------------------------------
    def _track_power(self, car: _Car, t: float, out: list[Alert]) -> None:
        off_mains = car.status.power != "mains"
        if off_mains == (car.power_site is not None):
            return
        s = self._rules.settings
        if off_mains:
            site_id = self._site_of(car.elevator_id)
            if site_id is None:
                return
            car.power_site = site_id
            site = self._sites.setdefault(site_id, _Site())
            site.members.add(car.elevator_id)
            if not site.grouped and len(site.members) >= s.power_cut_min_elevators:
                site.grouped = True
                self._site_alert("fire", site_id, site, t, out)
            return
        site_id, car.power_site = car.power_site, None
        site = self._sites[site_id]  # type: ignore[index]
        site.members.discard(car.elevator_id)
        if not site.members:
            del self._sites[site_id]  # type: ignore[arg-type]
            if site.grouped:
                self._site_alert("clear", site_id, site, t, out)  # type: ignore[arg-type]

    def _site_alert(
        self, action: Literal["fire", "clear"], site_id: str, site: _Site, t: float,
        out: list[Alert],
    ) -> None:  # fmt: skip
        cars = ", ".join(sorted(site.members))
        detail = f"{len(site.members)} elevators off mains: {cars}" if action == "fire" else ""
        out.append(
            Alert(action, site_id, SITE_RULE, "power_cut", self._rules.settings.power_cut_severity,
                  "fault", _at(t), f"site:{site_id}:power_cut", detail)
        )  # fmt: skip
