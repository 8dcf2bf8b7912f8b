"""A write-ahead journal of received MQTT messages, for a client that acknowledges on receipt.

libmosquitto sends a QoS 1 PUBACK as soon as the message callback returns, not when we say so.
So the callback appends the message here first: one `write(2)` into the page cache, which
outlives a crash of the gateway process (kill -9, OOM, a bug); a background thread fsyncs
every `fsync_interval_s`, which bounds what a crash of the machine can take. Messages are
counted per segment and a segment is deleted once every message in it is durable further
down the line (stored or spooled); at start, what a previous run left is read back first.

Record: `<topic length u16><payload length u32><received_at f64>`, topic, payload. A torn
last record (the machine died mid-write) is ignored: it was never acknowledged.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import structlog

log = structlog.get_logger(__name__)

_HEADER = struct.Struct("<HId")
_SUFFIX = ".wal"


class Entry(NamedTuple):
    segment: int
    topic: str
    payload: bytes
    received_at: float  # Unix seconds


class Journal:
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
        self._left = sorted(int(p.stem) for p in self._dir.glob("*" + _SUFFIX))
        self._unsettled: dict[int, int] = {}  # segment -> messages not yet durable downstream
        self._segment = (self._left[-1] if self._left else 0) + 1
        self._fd = self._open(self._segment)
        self._size = 0
        self._dirty = False
        self._closed = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, name="journal-fsync", daemon=True)
        self._syncer.start()

    def recover(self) -> Iterator[Entry]:
        """What a previous run journaled and may not have stored: every entry of its
        segments, oldest first. Each must be `settle`d like a new one."""
        for segment in self._left:
            data = self._path(segment).read_bytes()
            entries = list(_records(segment, data))
            with self._lock:
                self._unsettled[segment] = len(entries)
            if entries:
                log.warning("journal_recovering", segment=segment, messages=len(entries))
            yield from entries
            self._release_if_settled(segment)
        self._left = []

    def append(self, topic: bytes, payload: bytes, received_at: float) -> int:
        """Journal one message (before it is acknowledged); returns its segment."""
        record = _HEADER.pack(len(topic), len(payload), received_at) + topic + payload
        with self._lock:
            if self._size >= self._segment_bytes:
                self._rotate()
            os.write(self._fd, record)
            self._size += len(record)
            self._dirty = True
            segment = self._segment
            self._unsettled[segment] = self._unsettled.get(segment, 0) + 1
        return segment

    def settle(self, segments: Iterable[int]) -> None:
        """These messages (one segment number each) are durable downstream now."""
        emptied = []
        with self._lock:
            for segment in segments:
                left = self._unsettled[segment] - 1
                self._unsettled[segment] = left
                if left == 0 and segment != self._segment:
                    emptied.append(segment)
        for segment in emptied:
            self._release_if_settled(segment)

    @property
    def unsettled(self) -> int:
        with self._lock:
            return sum(self._unsettled.values())

    def close(self) -> None:
        self._closed.set()
        self._syncer.join()
        with self._lock:
            os.fsync(self._fd)
            os.close(self._fd)
            if not self._unsettled.get(self._segment):
                self._path(self._segment).unlink(missing_ok=True)

    def _rotate(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        if not self._unsettled.get(self._segment):
            self._unsettled.pop(self._segment, None)
            self._path(self._segment).unlink(missing_ok=True)
        self._segment += 1
        self._fd = self._open(self._segment)
        self._size = 0

    def _release_if_settled(self, segment: int) -> None:
        with self._lock:
            if self._unsettled.get(segment, 0) > 0 or segment == self._segment:
                return
            self._unsettled.pop(segment, None)
        self._path(segment).unlink(missing_ok=True)

    def _sync_loop(self) -> None:
        while not self._closed.wait(self._fsync_interval_s):
            with self._lock:
                if not self._dirty:
                    continue
                self._dirty = False
                fd = os.dup(self._fd)  # fsync outside the lock: appends go on meanwhile
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _open(self, segment: int) -> int:
        fd = os.open(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new name survives a crash of the machine
        finally:
            os.close(dir_fd)
        return fd

    def _path(self, segment: int) -> Path:
        return self._dir / f"{segment:012d}{_SUFFIX}"


def _records(segment: int, data: bytes) -> Iterator[Entry]:
    pos, end = 0, len(data)
    while pos + _HEADER.size <= end:
        topic_len, payload_len, received_at = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        stop = start + topic_len + payload_len
        if stop > end:
            log.warning("journal_torn_record", segment=segment, offset=pos)
            return
        topic = data[start : start + topic_len].decode("utf-8", "replace")
        yield Entry(segment, topic, data[start + topic_len : stop], received_at)
        pos = stop
