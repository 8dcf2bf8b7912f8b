"""Detection scoring: a labelled scenario run straight into the rule engine, alerts matched
against the labels.

The fleet publishes into a `ListPublisher`; after every tick of simulated time its messages
are decoded (`gateway.frames.decode`) and observed by a `RuleEngine` as received at the end
of that tick, then the engine is ticked. No broker, no sleeping: the clock is a `FixedClock`.

Matching, per elevator (times are instants, so device and gateway times compare directly):

- A label's window is [start, end + one tick]. The extra tick is the delivery delay: a
  frame sent during a tick reaches the engine at the tick's end. A label still open when
  the run stops ends at the end of the run; if it started less than the longest rule hold
  plus one tick before that, no rule could have fired yet: it is cut off, not scored.
- An entrapment label is detected when an entrapment-kind `fire` alert for its elevator
  falls in its window; latency is the first such alert's time minus the label's start.
- A fault label (kind = a catalogue code) is detected when a `fire` alert of that kind
  falls in its window, or when one that fired earlier is not yet cleared at its start: a
  fault that recurs while its alarm is still clearing (the clear hold) continues that
  episode by design, and the dispatcher still has the alarm. Codes no rule opens an
  incident of (a short misuse of the alarm button) are counted but not scored.
- A false entrapment alert is an entrapment-kind `fire` alert outside the window of every
  entrapment label of its elevator.
- An unexplained alert is a fault or accident `fire` alert outside the window of every
  label of its elevator: an alarm where nothing was injected.

Offline alerts (class `event`) come from controller reboots and from flaky firmware whose
lost frames leave a car silent for the silence window; neither is labelled, so they are
counted, not scored.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from gateway.clock import FixedClock
from gateway.frames import Rejected, decode
from gateway.rules import Alert, RuleEngine, RuleSet, load_rules
from simulators.fleet import Fleet, FleetStats
from simulators.labels import Label
from simulators.mqtt import ListPublisher
from simulators.scenario import Scenario

SCORING_SCENARIO: Final = Path(__file__).resolve().parent / "scenarios" / "scoring.yaml"
ENTRAPMENT: Final = "entrapment"
CONTROLLER_RAISED: Final = "controller ENTRAPMENT"  # labels whose controller raised it
DEFAULT_DURATION_S: Final = 3600.0


@dataclass(frozen=True)
class Run:
    """What one scenario run produced: the ground truth and the engine's alerts."""

    scenario: Scenario
    start: datetime
    end: datetime
    labels: list[Label]
    alerts: list[Alert]
    stats: FleetStats
    rejected: Counter[str]  # frames the decoder refused, by reason
    flaky: frozenset[str]  # elevators whose firmware misbehaves (scenario `misbehave`)


def run_scenario(
    scenario: Scenario, rules: RuleSet | None = None, duration_s: float | None = None
) -> Run:
    """Run `scenario` for `duration_s` (default: its own, else an hour) into a rule engine."""
    duration = duration_s or scenario.duration_s or DEFAULT_DURATION_S
    clock = FixedClock(scenario.start or datetime.now(UTC))
    publisher = ListPublisher()
    fleet = Fleet(scenario, clock, publisher)
    engine = RuleEngine(rules or load_rules())
    alerts: list[Alert] = []
    rejected: Counter[str] = Counter()
    fleet.open()
    while fleet.stats.sim_s < duration:
        fleet.step()
        now = clock.advance(scenario.tick_s)
        for topic, payload, _retain in publisher.messages:
            frame = decode(topic, payload, now)
            if isinstance(frame, Rejected):
                rejected[frame.reason] += 1
            else:
                alerts += engine.observe(frame, now)
        publisher.messages.clear()
        alerts += engine.tick(now)
    # The end of the run is the end of the observation, not a fleet-wide outage: the
    # "offline" the publisher announces on closing is never observed.
    fleet.stop()
    flaky = frozenset(u.device.elevator_id for u in fleet.units if u.misbehaviour is not None)
    return Run(
        scenario, fleet.epoch, clock.now(), fleet.label_log, alerts, fleet.stats, rejected, flaky
    )


@dataclass(frozen=True)
class Detection:
    label: Label
    alert: Alert | None  # the first matching `fire`, if any

    @property
    def latency_s(self) -> float | None:
        """Alert time minus label start; negative for a fault whose alarm was already up."""
        if self.alert is None:
            return None
        return (self.alert.at - datetime.fromisoformat(self.label.start)).total_seconds()


@dataclass(frozen=True)
class Latency:
    count: int
    median_s: float
    p90_s: float  # nearest rank
    max_s: float


@dataclass(frozen=True)
class Score:
    entrapments: list[Detection]
    faults: list[Detection]  # labels of codes a rule opens an incident of
    unscored: Counter[str]  # labels of codes no rule opens an incident of, by code
    cut_off: Counter[str]  # labels started too near the end of the run to score, by kind
    false_entrapment: list[Alert]
    unexplained: list[Alert]
    offline_alerts: int

    @property
    def recall(self) -> float:
        return recall(self.entrapments)

    def by_entrapment_kind(self) -> dict[str, list[Detection]]:
        """Entrapments by cause, and those the controller raised ENTRAPMENT for."""
        groups: dict[str, list[Detection]] = defaultdict(list)
        for d in self.entrapments:
            groups[d.label.cause or "unknown"].append(d)
            if "ENTRAPMENT" in d.label.codes:
                groups[CONTROLLER_RAISED].append(d)
        return dict(sorted(groups.items()))

    def by_fault_code(self) -> dict[str, list[Detection]]:
        groups: dict[str, list[Detection]] = defaultdict(list)
        for d in self.faults:
            groups[d.label.kind].append(d)
        return dict(sorted(groups.items()))


def recall(detections: Iterable[Detection]) -> float:
    """Share of `detections` that found their alert; NaN when there are none."""
    found = [d.alert is not None for d in detections]
    return sum(found) / len(found) if found else float("nan")


def latency(detections: Iterable[Detection]) -> Latency | None:
    values = sorted(d.latency_s for d in detections if d.latency_s is not None)
    if not values:
        return None
    p90 = values[math.ceil(0.9 * len(values)) - 1]
    return Latency(len(values), statistics.median(values), p90, values[-1])


def score(run: Run, rules: RuleSet | None = None) -> Score:
    """Match `run`'s alerts against its labels (see the module's docstring)."""
    rule_set = rules or load_rules()
    opened = {r.opens.kind for r in rule_set.rules}
    slack = timedelta(seconds=run.scenario.tick_s)
    scorable_until = run.end - slack - timedelta(seconds=max(r.hold for r in rule_set.rules))
    windows: dict[str, list[tuple[Label, datetime, datetime]]] = defaultdict(list)
    for label in run.labels:
        start = datetime.fromisoformat(label.start)
        end = datetime.fromisoformat(label.end) if label.end else run.end
        windows[label.elevator_id].append((label, start, end + slack))
    # Each `fire` with the time its episode cleared (the end of the run if it did not).
    fired: dict[str, list[tuple[Alert, datetime]]] = defaultdict(list)
    up: dict[tuple[str, str], int] = {}
    for alert in run.alerts:
        episodes = fired[alert.elevator_id]
        if alert.action == "fire":
            up[alert.elevator_id, alert.rule] = len(episodes)
            episodes.append((alert, run.end))
        elif (i := up.pop((alert.elevator_id, alert.rule), None)) is not None:
            episodes[i] = (episodes[i][0], alert.at)

    def first(
        label: Label, start: datetime, end: datetime, kind: str, still_up: bool = False
    ) -> Alert | None:
        hits = [
            a
            for a, cleared in fired[label.elevator_id]
            if a.kind == kind and (start <= a.at <= end or (still_up and a.at < start <= cleared))
        ]
        return min(hits, key=lambda a: a.at, default=None)

    def covered(alert: Alert, kind: str | None) -> bool:
        return any(
            start <= alert.at <= end
            for label, start, end in windows[alert.elevator_id]
            if kind is None or label.kind == kind
        )

    entrapments: list[Detection] = []
    faults: list[Detection] = []
    unscored: Counter[str] = Counter()
    cut_off: Counter[str] = Counter()
    for label, start, end in (w for ws in windows.values() for w in ws):
        if label.end is None and start > scorable_until:
            cut_off[label.kind] += 1
        elif label.kind == ENTRAPMENT:
            entrapments.append(Detection(label, first(label, start, end, ENTRAPMENT)))
        elif label.kind in opened:
            faults.append(Detection(label, first(label, start, end, label.kind, still_up=True)))
        elif label.kind != "maintenance":
            unscored[label.kind] += 1
    fires = [a for episodes in fired.values() for a, _cleared in episodes]
    return Score(
        entrapments,
        faults,
        unscored,
        cut_off,
        false_entrapment=[a for a in fires if a.kind == ENTRAPMENT and not covered(a, ENTRAPMENT)],
        unexplained=[
            a for a in fires if a.incident_class in ("fault", "accident") and not covered(a, None)
        ],
        offline_alerts=sum(a.incident_class == "event" for a in fires),
    )
