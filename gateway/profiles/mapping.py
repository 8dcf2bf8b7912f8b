"""A profile compiled once into a decoder: payload bytes -> a contract status frame.

At load, the profile's paths become a msgspec struct type for the payload (parsed and
type-checked in one pass, in C, skipping everything the profile does not name), the status
fields one generated function (attribute reads, map lookups, constants: one call, as the
rules' conditions are compiled), and the time a parser for its format. No YAML is read per
message. Direct fields carry the contract's own constraints, so a value out of range is
refused naming the payload's path, and mapped values were checked against the contract at
load: the status body is built without a second validation. A value outside its map is
rare, so the generated function does not say which: the per-field functions find it.
Local times are read in their zone and kept in UTC, as the gateway's own clock is: the
frame's time then costs the rest of the gateway no zone lookups (nor, in arithmetic with
the gateway's times, any offset at all).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Annotated, Any, Final, get_type_hints
from zoneinfo import ZoneInfo

import msgspec
from msgspec import Meta

from gateway.frames import (
    ELEVATOR_ID_RE,
    MAX_FUTURE_S,
    MAX_PAST_S,
    MAX_PAYLOAD_BYTES,
    Frame,
    Rejected,
    StatusBody,
)
from gateway.profiles.spec import ID_PLACEHOLDER, STATUS_FIELDS, Profile, Source, TimeSpec

MAX_FAULTS: Final = 64  # fault numbers in one frame, at most
_CONTRACT_TYPES: Final = get_type_hints(StatusBody, include_extras=True)
_ISO_LOCAL: Final = "%Y-%m-%d %H:%M:%S"  # the usual one: parsed without strptime
_ISO_LOCAL_RE: Final = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\Z")
_NOT_CODE_RE: Final = re.compile(r"[^A-Z0-9_]")


class CompileError(ValueError):
    """The profile cannot be compiled (e.g. one path read as two types)."""


@dataclass(slots=True)
class MappedFrame(Frame):
    """A status frame mapped from a profile's payload, with the faults it reports active:
    catalogue code -> the vendor codes behind it (None: the profile reports no faults)."""

    faults: dict[str, tuple[int | str, ...]] | None = None
    profile: str = ""


class _Invalid(Exception):
    def __init__(self, reason: str, path: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.path, self.message = reason, path, message


def _leaf_type(source: Source, contract_type: Any) -> Any:
    if source.map is not None:
        kinds = sorted({type(k) for k in source.map}, key=lambda t: t.__name__)
        return kinds[0] if len(kinds) == 1 else Any
    if source.scale is not None:
        return float
    return contract_type


def _struct(tree: dict[str, Any], name: str) -> Any:
    """Nested msgspec structs for a tree of path parts (leaves are types)."""
    fields, rename = [], {}
    for i, (key, sub) in enumerate(tree.items()):
        kind = _struct(sub, f"{name}_{i}") if isinstance(sub, dict) else sub
        fields.append((f"f{i}", kind))
        rename[f"f{i}"] = key
    return msgspec.defstruct(name, fields, rename=rename, frozen=True, gc=False)


class Mapper:
    """One profile, compiled: `decode` turns a payload into a `MappedFrame` or `Rejected`."""

    def __init__(self, profile: Profile) -> None:
        assert profile.topic and profile.ts and profile.status and profile.elevator_id
        assert profile.seq is not None and profile.boot is not None
        self.profile = profile
        self.name = profile.name
        self._prefix, _, self._suffix = profile.topic.partition(ID_PLACEHOLDER)
        self._tree: dict[str, Any] = {}
        self._attrs: dict[str, str] = {}  # payload path -> attribute path in its struct
        self._ts_path = profile.ts.path
        get_id = self._getter(profile.elevator_id.path, str)  # type: ignore[arg-type]
        get_seq = self._counter(profile.seq, "seq")
        get_boot = self._counter(profile.boot, "boot")
        get_ts = self._time(profile.ts)
        fields = [(name, self._field(profile.status[name], name)) for name in STATUS_FIELDS]
        build = self._generate(profile, dict(fields))
        get_faults = self._faults()
        root = _struct(self._tree, "Payload")
        self._decoder = msgspec.json.Decoder(root)
        self._id_path = profile.elevator_id.path
        self._get_id, self._get_seq, self._get_boot = get_id, get_seq, get_boot
        self._get_ts, self._fields, self._get_faults = get_ts, fields, get_faults
        self._build = build

    def elevator_of(self, topic: str) -> str | None:
        """The elevator id, if the topic is this profile's."""
        prefix, suffix = self._prefix, self._suffix
        if topic.startswith(prefix) and topic.endswith(suffix):
            eid = topic[len(prefix) : len(topic) - len(suffix)]
            if ELEVATOR_ID_RE.fullmatch(eid):  # (no "/": one level)
                return sys.intern(eid)
        return None

    # -- compiling ---------------------------------------------------------------------------
    def _generate(
        self, profile: Profile, fields: dict[str, Callable[[Any], Any]]
    ) -> Callable[..., StatusBody]:
        """`build(root, elevator_id, seq, boot, ts)`: the status body, in one call, its
        fields given in the struct's order (positional: the fastest way to build one). Only
        generated names and attribute paths are in the code; tables and constants are
        bound as globals of the function."""
        assert profile.status is not None
        bound: dict[str, Any] = {"StatusBody": StatusBody}
        args = []
        for name in STATUS_FIELDS:
            source = profile.status[name]
            if source.path is None:
                bound[f"value_{name}"] = source.value
                args.append(f"value_{name}")
            elif source.map is not None:
                bound[f"map_{name}"] = dict(source.map)
                args.append(f"map_{name}[root.{self._attrs[source.path]}]")
            elif source.scale is not None:
                bound[f"scaled_{name}"] = fields[name]
                args.append(f"scaled_{name}(root)")
            else:
                args.append(f"root.{self._attrs[source.path]}")
        code = (
            "def build(root, elevator_id, seq, boot, ts):\n"
            f"    return StatusBody(1, elevator_id, seq, boot, ts, {', '.join(args)})\n"
        )
        exec(compile(code, f"<profile {profile.name}>", "exec"), bound)
        return bound["build"]  # type: ignore[no-any-return]

    def _getter(self, path: str, kind: Any) -> Callable[[Any], Any]:
        """Register `path` as a leaf of type `kind`; the function reading it."""
        node = self._tree
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CompileError(f"{path}: {part} is read as a value elsewhere")
        leaf = parts[-1]
        if leaf in node and node[leaf] != kind:
            raise CompileError(f"{path} is read as two different types")
        node[leaf] = kind
        # The struct's attribute names: f<i> by position in each level (positions are
        # final: later paths only add keys after these).
        attrs, node = [], self._tree
        for part in parts:
            attrs.append(f"f{list(node).index(part)}")
            node = node[part]
        self._attrs[path] = ".".join(attrs)
        return attrgetter(self._attrs[path])

    def _counter(self, source: Source, name: str) -> Callable[[Any, datetime], int]:
        if getattr(source, "derive", None) == "time":  # `seq` only (the spec checks)
            return lambda _root, ts: int(ts.timestamp() * 1000)
        if source.path is None:
            value = int(source.value)
            return lambda _root, _ts: value
        get = self._getter(source.path, _CONTRACT_TYPES[name])
        return lambda root, _ts: get(root)  # type: ignore[no-any-return]

    def _field(self, source: Source, name: str) -> Callable[[Any], Any]:
        contract_type = _CONTRACT_TYPES[name]
        if source.path is None:
            value = source.value
            return lambda _root: value
        get = self._getter(source.path, _leaf_type(source, contract_type))
        path = source.path
        if source.map is not None:
            table = dict(source.map)

            def mapped(root: Any) -> Any:
                raw = get(root)
                try:
                    return table[raw]
                except (KeyError, TypeError):
                    raise _Invalid("unknown_enum", path, f"{raw!r} is not in the map") from None

            return mapped
        if source.scale is not None:
            factor = source.scale

            def scaled(root: Any) -> Any:
                value = get(root) * factor
                try:  # the contract's range, after scaling
                    return msgspec.convert(value, contract_type)
                except msgspec.ValidationError as exc:
                    raise _Invalid("out_of_range", path, f"{value!r} ({exc})") from None

            return scaled
        return get

    def _time(self, spec: TimeSpec) -> Callable[[Any], datetime]:
        path, fmt = spec.path, spec.format
        if fmt == "rfc3339":
            return self._getter(path, Annotated[datetime, Meta(tz=True)])
        if fmt in ("epoch_s", "epoch_ms"):
            get = self._getter(path, float)
            divisor = 1000.0 if fmt == "epoch_ms" else 1.0

            def epoch(root: Any) -> datetime:
                try:
                    return datetime.fromtimestamp(get(root) / divisor, UTC)
                except (OverflowError, OSError, ValueError) as exc:
                    raise _Invalid("bad_timestamp", path, str(exc)) from None

            return epoch
        get = self._getter(path, str)
        zone = ZoneInfo(spec.zone) if spec.zone else None
        # A fleet's frames come in time order, many in the same second: the last one read.
        last: list[Any] = [None, None]

        def local(root: Any) -> datetime:
            text = get(root)
            if text == last[0]:
                return last[1]  # type: ignore[no-any-return]
            try:
                if fmt == _ISO_LOCAL and _ISO_LOCAL_RE.match(text):
                    at = datetime.fromisoformat(text)
                else:
                    at = datetime.strptime(text, fmt)
            except ValueError as exc:
                raise _Invalid("bad_timestamp", path, f"not {fmt}: {exc}") from None
            if at.tzinfo is None:
                at = (at - zone.utcoffset(at)).replace(tzinfo=UTC)  # type: ignore[operator, union-attr]
            else:
                at = at.astimezone(UTC)
            last[:] = text, at
            return at

        return local

    def _faults(self) -> Callable[[Any], dict[str, tuple[int | str, ...]] | None]:
        spec = self.profile.faults
        if spec is None:
            return lambda _root: None
        kinds = sorted({type(k) for k in spec.codes}, key=lambda t: t.__name__)
        element: Any = int if kinds == [int] else int | Annotated[str, Meta(min_length=1)]
        get = self._getter(spec.path, Annotated[list[element], Meta(max_length=MAX_FAULTS)])
        table = dict(spec.codes)

        def faults(root: Any) -> dict[str, tuple[int | str, ...]]:
            active: dict[str, tuple[int | str, ...]] = {}
            for vendor in get(root):
                code = table.get(vendor) or _vendor_code(vendor)
                if vendor not in active.get(code, ()):
                    active[code] = (*active.get(code, ()), vendor)
            return active

        return faults

    # -- the hot path --------------------------------------------------------------------------
    def decode(
        self,
        topic: str,
        payload: bytes,
        received_at: datetime,
        elevator_id: str,
        max_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> MappedFrame | Rejected:
        def reject(reason: str, detail: str) -> Rejected:
            return Rejected(
                reason, f"profile {self.name}: {detail}", topic, payload, received_at, elevator_id
            )

        if len(payload) > max_bytes:
            return reject("oversized", f"payload of {len(payload)} bytes exceeds {max_bytes}")
        if not payload.isascii():
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError as exc:
                return reject("bad_encoding", f"not UTF-8: {exc.reason} at byte {exc.start}")
        try:
            root = self._decoder.decode(payload)
        except msgspec.ValidationError as exc:
            return reject(*self._explain(str(exc)))
        except msgspec.DecodeError as exc:
            return reject("bad_json", str(exc))
        except RecursionError:
            return reject("too_deep", "nested too deeply to parse")
        try:
            if self._get_id(root) != elevator_id:
                return reject("spoofed_id", f"{self._id_path}: not the topic's elevator")
            ts = self._get_ts(root)
            lag = (received_at - ts).total_seconds()
            if -lag > MAX_FUTURE_S or lag > MAX_PAST_S:
                return reject(
                    "timestamp_out_of_range",
                    f"{self._ts_path}: {ts.isoformat()} is implausibly far from now",
                )
            seq, boot = self._get_seq(root, ts), self._get_boot(root, ts)
            try:
                body = self._build(root, elevator_id, seq, boot, ts)
            except (KeyError, TypeError):  # a value outside its map: which one?
                for _name, get in self._fields:
                    get(root)
                raise
            faults = self._get_faults(root)
        except _Invalid as exc:
            return reject(exc.reason, f"{exc.path}: {exc.message}")
        return MappedFrame(
            kind="status", elevator_id=elevator_id, received_at=received_at, body=body,
            lag_s=lag, faults=faults, profile=self.name,
        )  # fmt: skip

    def _explain(self, message: str) -> tuple[str, str]:
        """msgspec's message on the payload as (reason, `path: message`), the path in the
        payload's own names."""
        text, _, at = message.partition(" - at `$")
        path = at.rstrip("`").lstrip(".")
        if missing := re.fullmatch(r"Object missing required field `([^`]*)`", text):
            return "missing_field", f"{path + '.' if path else ''}{missing[1]}: missing"
        if not path and text.startswith("Expected `object`"):
            return "not_an_object", text
        if path == self._ts_path:
            return "bad_timestamp", f"{path}: {text}"
        if re.match(r"Expected `[\w\[\]]+` (?:>=|<=|>|<) |.*length", text):
            return "out_of_range", f"{path}: {text}"
        return "wrong_type", f"{path}: {text}"


def _vendor_code(vendor: int | str) -> str:
    """A vendor number the profile does not list: `X_<number>`."""
    return "X_" + _NOT_CODE_RE.sub("_", str(vendor).upper())[:60]
