"""Run the test cases stored beside the rules: timed frames in, the expected alerts out.

Each elevator repeats its last status every `heartbeat` seconds (as a healthy device does)
until it goes `silent` or its last will (`online: false`) arrives; the engine ticks every
second. An alert that was not expected fails the case as much as one that did not come.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from gateway.frames import EventBody, Frame, StatusBody
from gateway.rules.engine import Alert, RuleEngine
from gateway.rules.spec import CASE_STATUS_DEFAULTS, Case, CaseFrame, Expected, RuleSet

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    missing: tuple[str, ...]  # expected, not produced
    unexpected: tuple[str, ...]  # produced, not expected (or different in detail)

    @property
    def passed(self) -> bool:
        return not self.missing and not self.unexpected


def run_cases(rules: RuleSet) -> list[CaseResult]:
    return [run_case(rules, case) for case in rules.cases]


def run_case(rules: RuleSet, case: Case) -> CaseResult:
    engine = RuleEngine(rules, site_of=case.sites.get)
    alerts: list[Alert] = []
    for t, frame in _timeline(case):
        alerts += engine.tick(_time(t))
        if frame is not None:
            alerts += engine.observe(frame, _time(t))
    missing, unexpected = _compare(case.expect, alerts)
    return CaseResult(case, missing, unexpected)


def _time(t: float) -> datetime:
    return START + timedelta(seconds=t)


def _timeline(case: Case) -> list[tuple[float, Frame | None]]:
    """Every frame (given or heartbeat) and every whole-second tick, in time order."""
    frames = sorted(case.frames, key=lambda f: f.at)
    until = case.until if case.until is not None else frames[-1].at + 60
    seq = itertools.count()
    status: dict[str, dict[str, Any]] = {}
    items: list[tuple[float, int, Frame | None]] = [
        (float(s), 0, None) for s in range(math.floor(until) + 1)
    ]
    for i, f in enumerate(frames):
        # An elevator reports its status from its first frame on (a default one if none).
        if f.status is not None or (f.elevator not in status and not _stops_beat(f)):
            status[f.elevator] = {
                **status.get(f.elevator, CASE_STATUS_DEFAULTS),
                **(f.status or {}),
            }
            end = next(
                (g.at for g in frames[i + 1 :] if g.elevator == f.elevator and _stops_beat(g)),
                until,
            )
            if case.heartbeat:
                beats = itertools.count(f.at + case.heartbeat, case.heartbeat)
                for b in itertools.takewhile(lambda b, end=end: b < end and b <= until, beats):
                    items.append((b, 1, _status(f.elevator, status[f.elevator], b, next(seq))))
        items.append((f.at, 1, _frame(f, status.get(f.elevator), next(seq))))
    items.sort(key=lambda x: (x[0], x[1]))
    return [(t, frame) for t, _, frame in items if t <= until]


def _stops_beat(f: CaseFrame) -> bool:
    return f.status is not None or f.silent or f.online is False


def _status(elevator: str, fields: dict[str, Any], at: float, seq: int) -> Frame:
    body = msgspec.convert(
        {**fields, "v": 1, "elevator_id": elevator, "seq": seq, "boot": 1, "ts": _time(at)},
        StatusBody,
    )
    return Frame("status", elevator, _time(at), body)


def _frame(f: CaseFrame, fields: dict[str, Any] | None, seq: int) -> Frame | None:
    if f.status is not None:
        assert fields is not None
        return _status(f.elevator, fields, f.at, seq)
    if f.event is not None:
        body = EventBody(
            v=1, elevator_id=f.elevator, seq=seq, boot=1, ts=_time(f.at), code=f.event,
            state=f.state,
        )  # fmt: skip
        return Frame("event", f.elevator, _time(f.at), body)
    if f.online is not None:
        return Frame("online", f.elevator, _time(f.at), None, online=f.online)
    return None  # silent: nothing is sent


def _compare(
    expected: tuple[Expected, ...], alerts: list[Alert]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    missing: list[str] = []
    left = list(alerts)
    for e in expected:
        action = "fire" if e.fire else "clear"
        match = next(
            (
                a
                for a in left
                if (a.action, a.rule, a.elevator_id) == (action, e.rule, e.elevator)
                and math.isclose((a.at - START).total_seconds(), e.at, abs_tol=1e-3)
                and all(
                    want is None or want == got
                    for want, got in (
                        (e.kind, a.kind),
                        (e.severity, a.severity),
                        (e.group, a.group),
                    )
                )
            ),
            None,
        )
        if match is None:
            missing.append(_describe(action, e.rule, e.elevator, e.at, e.severity, e.group))
        else:
            left.remove(match)
    unexpected = [
        _describe(a.action, a.rule, a.elevator_id, (a.at - START).total_seconds(), a.severity,
                  a.group)
        for a in left
    ]  # fmt: skip
    return tuple(missing), tuple(unexpected)


def _describe(
    action: str, rule: str, elevator: str, at: float, severity: str | None, group: str | None
) -> str:
    extra = "".join(f" {v}" for v in (severity, group) if v)
    return f"{action} {rule} {elevator} at {at:g}s{extra}"
