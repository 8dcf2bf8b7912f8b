"""Device profiles: payload formats other than the contract's, mapped onto contract frames by
data files (`device_profiles/*.yaml`, plus `GATEWAY_PROFILES_DIR`).

`Profiles` is what the pipeline calls instead of `gateway.frames`: `elevator_of` and `decode`
route a topic to the contract (the native profile, first and unchanged) or to a compiled
profile, and `derive` turns a mapped frame's fault set into raise and clear events. Mapped
frames then take the same path as native ones: dedup, rules, incidents, storage, dead letter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from gateway.frames import MAX_PAYLOAD_BYTES, Frame, Rejected, decode, elevator_of
from gateway.profiles.faults import FaultSets
from gateway.profiles.mapping import CompileError, MappedFrame, Mapper
from gateway.profiles.spec import (
    DEFAULT_PROFILES_DIR,
    Profile,
    ProfileError,
    load_profiles,
    subscription,
)

__all__ = ["DEFAULT_PROFILES_DIR", "MappedFrame", "Profile", "ProfileError", "Profiles",
           "compile_profiles", "load_profiles"]  # fmt: skip

_NONE: Final[tuple[Frame, ...]] = ()
_NATIVE_PREFIX: Final = "elevators/"


def compile_profiles(profiles: Sequence[Profile]) -> list[Mapper]:
    """Each mapped profile compiled; `ProfileError` (file:line) for one that cannot be."""
    mappers, errors = [], []
    for p in profiles:
        if p.contract:
            continue
        try:
            mappers.append(Mapper(p))
        except CompileError as exc:
            errors.append(f"{p.file}: {exc}")
    if errors:
        raise ProfileError(errors)
    return mappers


class Profiles:
    def __init__(self, profiles: Sequence[Profile], faults_file: Path | None = None) -> None:
        self.profiles = tuple(profiles)
        self._mappers = compile_profiles(profiles)
        # The topic filters to subscribe to besides the contract's.
        self.subscriptions = tuple(t for m in self._mappers for t in subscription(m.profile))
        self.faults = FaultSets(faults_file)
        # The pipeline asks `elevator_of`, then `decode`, of one topic: routed once.
        self._routed: tuple[str, tuple[Mapper, str] | None] = ("", None)

    @classmethod
    def load(cls, extra_dir: Path | None = None, faults_file: Path | None = None) -> Profiles:
        return cls(load_profiles(*([extra_dir] if extra_dir else [])), faults_file)

    def _route(self, topic: str) -> tuple[Mapper, str] | None:
        if topic is self._routed[0]:
            return self._routed[1]
        route = None
        for m in self._mappers:
            eid = m.elevator_of(topic)
            if eid is not None:
                route = (m, eid)
                break
        self._routed = (topic, route)
        return route

    def elevator_of(self, topic: str) -> str | None:
        """The elevator a topic names, whichever profile claims it."""
        if topic.startswith(_NATIVE_PREFIX):
            return elevator_of(topic)
        route = self._route(topic)
        return route[1] if route is not None else None

    def decode(
        self,
        topic: str,
        payload: bytes,
        received_at: datetime,
        max_bytes: int = MAX_PAYLOAD_BYTES,
        elevator_id: str | None = None,
    ) -> Frame | Rejected:
        """`gateway.frames.decode` for the contract's topics, the profile's mapping for a
        profile's; a topic nobody claims is rejected as `bad_topic`."""
        route = None if topic.startswith(_NATIVE_PREFIX) else self._route(topic)
        if route is None:
            return decode(topic, payload, received_at, max_bytes, elevator_id)
        mapper, eid = route
        return mapper.decode(topic, payload, received_at, eid, max_bytes)

    def derive(self, frame: Frame) -> Sequence[Frame]:
        """The events a new (not duplicate) frame implies: its profile's fault set changes."""
        if type(frame) is not MappedFrame or frame.faults is None:
            return _NONE
        return self.faults.events(frame)
