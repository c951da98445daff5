"""Events from log files as they grow: heartbeats and failures, with their own timestamps.

Follow reads a file from an offset, never "the last N lines": a line counts once, when
it is whole. It survives rotation (the path names a new file: the old one is read to
its end first), truncation (the file shrinks: read again from its start), partial
lines (kept until their newline comes) and long lines (cut at max_line, the rest of
that line dropped). Events reads NDJSON (a topic field and a worker field) or plain
text with regular expressions whose named group `worker` names the worker; lines that
are neither (noise, broken JSON) are skipped. Timestamps are recognised when present:
ISO 8601 (local time when it has no zone), epoch seconds or milliseconds in a JSON field, Redis's `23 Nov 2026
16:31:41.123`, syslog's `Nov 23 16:31:41`, and logfmt's `ts=`.
"""

from __future__ import annotations

import calendar
import collections
import json
import os
import re
import stat
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional

from checks import ConfigError, regex

MAX_LINE = 64 * 1024
READ_PER_POLL = 1024 * 1024  # at most this much per poll: a huge backlog cannot stall a poll
_ROTATED_READS = 256  # a rotated file is read to its end, up to 256 MiB, before the new one
_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                       "dec"), 1)}
# Each a fixed shape, no nested repetition: no backtracking on a hostile line.
_ISO = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)([.,]\d+)?(Z|[+-]\d\d:?\d\d)?")
_REDIS = re.compile(r"\b(\d{1,2}) ([A-Z][a-z]{2}) (\d{4}) (\d\d):(\d\d):(\d\d)(\.\d+)?")
_SYSLOG = re.compile(r"^([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)\b")
_LOGFMT = re.compile(r"(?:^|\s)(?:ts|time)=\"?([^\s\"]+)")


class Follow:
    """New whole lines of a file since the last call to lines(). from_end: what the file
    holds at the first call does not count (a file that appears later is read whole).
    problem: why the path cannot be read (not a regular file, no permission), or None."""

    def __init__(self, path: str, from_end: bool = False, max_line: int = MAX_LINE):
        self.path, self.max_line = path, max_line
        self.problem: Optional[str] = None
        self._file = None
        self._identity = None
        self._partial = b""
        self._dropping = False  # inside a line past max_line
        self._from_end = from_end

    def lines(self) -> List[str]:
        out: List[str] = []
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            now = None
        except OSError as exc:  # a directory on the way we may not enter: unreadable, not absent
            self.problem = "cannot read %s: %s" % (self.path, exc.strerror or exc)
            now = None
        if now is not None and not stat.S_ISREG(now.st_mode):  # a FIFO would block, /dev/zero never end
            self.problem = "%s is not a regular file" % self.path
            now = None
        if self._file is not None and (now is None or (now.st_dev, now.st_ino) != self._identity):
            for _ in range(_ROTATED_READS):  # rotated away: what the old file still had comes first
                if not self._read(out):
                    break
            self._close()
        if self._file is None and now is None:
            self._from_end = False  # it appears later: all of it is new
        if self._file is None and now is not None:
            try:
                self._file = open(self.path, "rb")
            except OSError as exc:
                self.problem = "cannot read %s: %s" % (self.path, exc.strerror or exc)
                return out
            self.problem = None
            self._identity = (now.st_dev, now.st_ino)
            if self._from_end:
                self._file.seek(0, os.SEEK_END)
                self._from_end = False
        if self._file is not None:
            if now is not None and now.st_size < self._file.tell():  # truncated in place: start again
                self._file.seek(0)
                self._partial, self._dropping = b"", False
            self._read(out)
        return out

    def _read(self, out: List[str]) -> bool:
        """Read the next piece into out; whether there was one."""
        try:
            data = self._file.read(READ_PER_POLL)
        except OSError as exc:
            self.problem = "cannot read %s: %s" % (self.path, exc.strerror or exc)
            return False
        if not data:
            return False
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        for piece in pieces:
            if not self._dropping:
                out.append(piece[:self.max_line].rstrip(b"\r").decode("utf-8", "replace"))
            self._dropping = False
        if len(self._partial) > self.max_line:  # a line with no end in sight: keep its start, drop the rest
            if not self._dropping:
                out.append(self._partial[:self.max_line].decode("utf-8", "replace"))
            self._partial, self._dropping = b"", True
        return True

    def _close(self) -> None:
        self._file.close()
        self._file, self._identity, self._partial, self._dropping = None, None, b"", False

    def unread(self) -> int:
        """Bytes written that have not been read yet: how far behind the file this is."""
        if self._file is None:
            return 0
        try:
            return max(0, os.fstat(self._file.fileno()).st_size - self._file.tell())
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self._file is not None:
            self._close()


Event = collections.namedtuple("Event", "kind worker at seen line")
Event.__doc__ = "kind: heartbeat | failure; at: the event's own epoch time, or None; seen: time.time() read."


class Events:
    """Lines to heartbeat and failure events, by NDJSON topics or by patterns."""

    def __init__(self, topics: Optional[Dict[str, str]] = None, worker_field: str = "worker_id",
                 topic_field: str = "topic", time_field: Optional[str] = None,
                 patterns: Optional[Dict[str, str]] = None, where: str = "events"):
        self.topics = {topic: kind for kind, topic in (topics or {}).items()}
        self.worker_field, self.topic_field, self.time_field = worker_field, topic_field, time_field
        self.patterns = {}
        for kind, pattern in (patterns or {}).items():
            problem = regex.pattern_problem(pattern)
            if problem:
                raise ConfigError("%s.%s: %s" % (where, kind, problem))
            if "worker" not in re.compile(pattern).groupindex:
                example = "'\\+sdown master (?P<worker>\\S+)'" if kind == "failure" else \
                    "'heartbeat from (?P<worker>\\S+)'"
                raise ConfigError("%s.%s: the pattern needs a group (?P<worker>...) naming the worker, e.g. %s"
                                  % (where, kind, example))
            self.patterns[kind] = pattern

    def warm(self, deadline: float) -> None:
        """Start the matching now (a helper process for most patterns), so that the first
        event is not seen late by the helper's start-up."""
        for pattern in self.patterns.values():
            regex.search_each(pattern, [""], deadline)

    def parse(self, lines: List[str], deadline: float) -> List[Event]:
        seen = time.time()
        found = []
        rest = []
        for line in lines:
            event = self._json_event(line, seen)
            if event is not None:
                found.append(event)
            elif self.patterns:
                rest.append(line)
        for kind, pattern in self.patterns.items():
            group = re.compile(pattern).groupindex["worker"]
            for line, spans in zip(rest, regex.search_each(pattern, rest, deadline)):
                if spans is not None and spans[group][1] > spans[group][0] >= 0:  # an empty name names no one
                    start, end = spans[group]
                    found.append(Event(kind, line[start:end], timestamp(line), seen, line))
        return found

    def _json_event(self, line: str, seen: float) -> Optional[Event]:
        if not self.topics or not line.lstrip().startswith("{"):
            return None
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):
            return None
        if not isinstance(doc, dict) or doc.get(self.topic_field) not in self.topics:
            return None
        worker = doc.get(self.worker_field)
        if worker is None:
            return None
        stamp = doc.get(self.time_field) if self.time_field else next(
            (doc[key] for key in ("ts", "timestamp", "time", "@timestamp") if key in doc), None)
        return Event(self.topics[doc[self.topic_field]], str(worker), timestamp(stamp), seen, line)


def timestamp(value: Any) -> Optional[float]:
    """Epoch seconds from an event's time, in whichever common form it comes; None if none."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return _epoch(float(value))
    text = str(value)
    if re.fullmatch(r"\d{9,13}(\.\d+)?", text):
        return _epoch(float(text))
    logfmt = _LOGFMT.search(text)
    if logfmt and logfmt.group(1) != text:
        return timestamp(logfmt.group(1))
    iso = _ISO.search(text)
    if iso:
        year, month, day, hour, minute, second = (int(g) for g in iso.groups()[:6])
        fraction = float((iso.group(7) or "0").replace(",", "."))  # Python's logging writes 12:00:00,123
        zone = iso.group(8)
        if not zone:  # no zone: local time, as Python's logging, Redis and syslog write it
            return time.mktime((year, month, day, hour, minute, second, 0, 0, -1)) + fraction
        epoch = calendar.timegm((year, month, day, hour, minute, second)) + fraction
        if zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            digits = zone[1:].replace(":", "")
            epoch -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        return epoch
    redis = _REDIS.search(text)
    if redis and redis.group(2).lower() in _MONTHS:
        day, month, year = int(redis.group(1)), _MONTHS[redis.group(2).lower()], int(redis.group(3))
        hour, minute, second = int(redis.group(4)), int(redis.group(5)), int(redis.group(6))
        return time.mktime((year, month, day, hour, minute, second, 0, 0, -1)) + float(redis.group(7) or 0)
    syslog = _SYSLOG.search(text)
    if syslog and syslog.group(1).lower() in _MONTHS:
        now = time.localtime()
        month, day = _MONTHS[syslog.group(1).lower()], int(syslog.group(2))
        year = now.tm_year - (1 if month > now.tm_mon else 0)  # no year in syslog: the last such date
        return time.mktime((year, month, day, int(syslog.group(3)), int(syslog.group(4)), int(syslog.group(5)),
                            0, 0, -1))
    return None


def _epoch(number: float) -> Optional[float]:
    """Seconds, or milliseconds (a number past the year 33658 in seconds); None outside 1990-2100."""
    seconds = number / 1000 if number > 1e12 else number
    return seconds if 631152000 <= seconds <= 4102444800 else None
