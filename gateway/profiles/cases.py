"""The cases stored beside each profile: payloads in, contract frames (or a rejection) out.

Each case runs on fresh fault sets, its messages in order, through the same `decode` and
`derive` as the gateway (dedup, which the pipeline adds, is not part of a profile). An
expected frame names only the fields it checks; `kind` is one of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.frames import Rejected, as_sent
from gateway.profiles import Profiles
from gateway.profiles.faults import FaultSets
from gateway.profiles.spec import ID_PLACEHOLDER, Case, CaseMessage, Profile


@dataclass(frozen=True, slots=True)
class CaseResult:
    profile: str
    case: Case
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


def run_cases(profiles: Sequence[Profile]) -> list[CaseResult]:
    router = Profiles(profiles)
    results = []
    for profile in profiles:
        for case in profile.tests:
            router.faults = FaultSets()
            problems = [
                f"message {n}: {problem}"
                for n, message in enumerate(case.messages, 1)
                for problem in _check(router, profile, message)
            ]
            results.append(CaseResult(profile.name, case, tuple(problems)))
    return results


def _topic(profile: Profile, message: CaseMessage) -> str:
    if message.topic is not None:
        return message.topic
    if profile.topic is None or profile.elevator_id is None or profile.elevator_id.path is None:
        return "elevators/E1/status"
    value: Any = message.payload
    for part in profile.elevator_id.path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return profile.topic.replace(ID_PLACEHOLDER, str(value))


def _check(router: Profiles, profile: Profile, message: CaseMessage) -> list[str]:
    payload = message.payload
    raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    result = router.decode(_topic(profile, message), raw, message.received_at)
    expected = message.rejected
    if isinstance(result, Rejected):
        if expected is None:
            return [f"rejected ({result.reason}: {result.detail})"]
        problems = []
        if result.reason != expected["reason"]:
            problems.append(f"rejected as {result.reason}, expected {expected['reason']}")
        if expected.get("path", "") not in result.detail:
            problems.append(f"detail {result.detail!r} does not name {expected['path']!r}")
        return problems
    if expected is not None:
        return [f"taken, expected a rejection ({expected['reason']})"]
    frames = [{"kind": f.kind, **as_sent(f)} for f in [result, *router.derive(result)]]
    problems = []
    if len(frames) != len(message.frames):
        kinds = [f"{f['kind']} {f.get('code', '')}".strip() for f in frames]
        problems.append(f"{len(frames)} frames ({', '.join(kinds)}), not {len(message.frames)}")
    for n, (want, got) in enumerate(zip(message.frames, frames, strict=False), 1):
        problems += [
            f"frame {n}: {key}: expected {value!r}, got {got.get(key)!r}"
            for key, value in want.items()
            if got.get(key) != value
        ]
    return problems
