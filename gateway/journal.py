"""A write-ahead journal of received MQTT messages: written by the receiver process, read in
order by the gateway's pipeline.

libmosquitto acknowledges a QoS 1 message itself, not when we say so. So the receiver
appends each burst of messages here before their PUBACKs can leave: one `write(2)` into the
page cache, which outlives a crash of the gateway (kill -9, OOM, a bug); the writer fsyncs every
`fsync_interval_s`, which bounds what a crash of the machine can take. The pipeline reads
the segments in order (what a previous run left comes first, by name) and deletes a segment
once it has read all of it and every message in it is durable further down the line
(stored or spooled).

Record: `<topic length u16><payload length u32><received_at f64>`, topic, payload. A torn
last record (the machine died mid-write) is ignored: it was never acknowledged.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, NamedTuple

import structlog

log = structlog.get_logger(__name__)

_HEADER = struct.Struct("<HId")
_SUFFIX = ".wal"
# About 700 frames: what one read hands the pipeline waits for the whole chunk to be
# processed, so a smaller chunk is a shorter wait for the last frame in it (alert latency).
_READ_CHUNK = 1 << 18


class Entry(NamedTuple):
    segment: int
    topic: str
    payload: bytes
    received_at: float  # Unix seconds


def _segments(directory: Path) -> list[int]:
    return sorted(int(p.stem) for p in directory.glob("*" + _SUFFIX) if p.stem.isdigit())


def _path(directory: Path, segment: int) -> Path:
    return directory / f"{segment:012d}{_SUFFIX}"


class JournalWriter:
    """The receiver's end: appends, starting a segment after any that exist."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 * 1024 * 1024,
        fsync_interval_s: float = 0.05,
    ) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._segment_bytes = segment_bytes
        self._fsync_interval_s = fsync_interval_s
        self._lock = threading.Lock()
        existing = _segments(directory)
        self._segment = (existing[-1] if existing else 0) + 1
        self._fd = self._open(self._segment)
        self._size = 0
        self._dirty = False
        self._closed = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, name="journal-fsync", daemon=True)
        self._syncer.start()

    def append_many(self, messages: list[tuple[bytes, bytes]], received_at: float) -> None:
        """Journal these messages (topic, payload), in order and in one write: all or none
        (on OSError nothing was added, and the caller retries them all)."""
        pack = _HEADER.pack
        data = b"".join(
            [part for t, p in messages for part in (pack(len(t), len(p), received_at), t, p)]
        )
        with self._lock:
            if self._size >= self._segment_bytes:
                # The reader takes a newer segment as the end of this one: finish it first,
                # and open the next before letting go of it (a failed open changes nothing).
                os.fsync(self._fd)
                fd = self._open(self._segment + 1)
                os.close(self._fd)
                self._fd, self._segment, self._size = fd, self._segment + 1, 0
            try:
                written = os.write(self._fd, data)
                while written < len(data):  # short write (disk full): finish or fail
                    written += os.write(self._fd, data[written:])
            except OSError:
                os.ftruncate(self._fd, self._size)  # no half record: the caller retries them
                raise
            self._size += len(data)
            self._dirty = True

    def close(self) -> None:
        self._closed.set()
        self._syncer.join()
        with self._lock:
            os.fsync(self._fd)
            os.close(self._fd)

    def _sync_loop(self) -> None:
        while not self._closed.wait(self._fsync_interval_s):
            try:
                with self._lock:
                    if not self._dirty:
                        continue
                    self._dirty = False
                    fd = os.dup(self._fd)  # fsync outside the lock: appends go on meanwhile
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                self._dirty = True
                log.exception("journal_fsync_failed_retrying")

    def _open(self, segment: int) -> int:
        fd = os.open(_path(self._dir, segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new name survives a crash of the machine
        finally:
            os.close(dir_fd)
        return fd


class JournalReader:
    """The pipeline's end: entries in order, oldest segment first; `settle` what is durable.

    Used from one thread at a time, except `settle`, which may come from another.
    """

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._unsettled: dict[int, int] = {}  # segment -> entries read and not yet durable
        self._finished: set[int] = set()  # segments read to their end
        self._segment: int | None = None
        self._file: BinaryIO | None = None
        self._pending = b""  # the start of a record still being written

    def read(self) -> list[Entry]:
        """The entries written since the last call (possibly none); never waits."""
        while self._file is not None or self._open_next():
            assert self._file is not None
            entries = self._parse(self._file.read(_READ_CHUNK))
            if entries or not self._has_newer():
                return entries
            # A newer segment means this one is complete: read what came before it, go on.
            entries = self._parse(self._file.read())
            if self._pending:  # the machine died mid-write: never acknowledged
                log.warning("journal_torn_record", segment=self._segment)
                self._pending = b""
            self._finish()
            if entries:
                return entries
        return []

    def settle(self, segments: Iterable[int]) -> None:
        """These entries (one segment number each) are durable downstream now."""
        emptied = []
        with self._lock:
            for segment in segments:
                left = self._unsettled[segment] - 1
                self._unsettled[segment] = left
                if left == 0 and segment in self._finished:
                    emptied.append(segment)
        for segment in emptied:
            self._release(segment)

    def close(self) -> None:
        """The writer has stopped: a segment read to its end and all settled can go."""
        if self._file is not None and self._segment is not None:
            if not self._file.read(1) and not self._pending:
                self._finish()
            else:
                self._file.close()
        self._file = None

    @property
    def unsettled(self) -> int:
        with self._lock:
            return sum(self._unsettled.values())

    def next_new_segment(self) -> int:
        """The segment a writer started now would write: those below it are a past run's."""
        existing = _segments(self._dir)
        return (existing[-1] if existing else 0) + 1

    def _open_next(self) -> bool:
        after = -1 if self._segment is None else self._segment
        later = [s for s in _segments(self._dir) if s > after]
        if not later:
            return False
        self._file = open(_path(self._dir, later[0]), "rb")  # noqa: SIM115 - kept open
        self._segment = later[0]
        self._pending = b""
        with self._lock:
            self._unsettled.setdefault(self._segment, 0)
        return True

    def _has_newer(self) -> bool:
        return any(s > (self._segment or 0) for s in _segments(self._dir))

    def _finish(self) -> None:
        assert self._file is not None and self._segment is not None
        self._file.close()
        self._file = None
        segment = self._segment
        with self._lock:
            self._finished.add(segment)
            done = self._unsettled.get(segment, 0) == 0
        if done:
            self._release(segment)

    def _release(self, segment: int) -> None:
        with self._lock:
            self._unsettled.pop(segment, None)
            self._finished.discard(segment)
        _path(self._dir, segment).unlink(missing_ok=True)

    def _parse(self, data: bytes) -> list[Entry]:
        data = self._pending + data if self._pending else data
        segment = self._segment
        assert segment is not None
        entries = []
        pos, end = 0, len(data)
        while pos + _HEADER.size <= end:
            topic_len, payload_len, received_at = _HEADER.unpack_from(data, pos)
            start = pos + _HEADER.size
            stop = start + topic_len + payload_len
            if stop > end:
                break
            topic = data[start : start + topic_len].decode("utf-8", "replace")
            entries.append(Entry(segment, topic, data[start + topic_len : stop], received_at))
            pos = stop
        self._pending = data[pos:]
        if entries:
            with self._lock:
                self._unsettled[segment] += len(entries)
        return entries
