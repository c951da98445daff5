"""What a run leaves for the next: the run history, append-only logs, and the locks that
keep two runs from acting at once.

history.jsonl (in the state directory, default the user's: default_dir()) has one JSON line per
run of any command, newest last, at most `limit` lines. A writer holds an flock on
history.lock while it appends one line in one write() or, past the limit, rewrites the
file atomically (temp file, fsync, rename); a reader needs no lock. A line torn by a
power cut is skipped with a warning, never fatal. The kernel drops an flock when its
holder dies, even by kill -9, so a lock file left behind never blocks the next run.
"""

from __future__ import annotations

import errno
import json
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

from checks import ConfigError, SmokeError, fsio


def default_dir() -> str:
    """The user's own state directory ($XDG_STATE_HOME/smoke.py, else ~/.local/state/smoke.py):
    a one-off run leaves nothing where it was started, and one user's runs share a history."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "smoke.py")

DEFAULT_LIMIT = 1000
DEFAULT_ESCALATE_AFTER = 3  # failures of a check in a row before a notification escalates it
MAX_LIMIT = 100000
MAX_READ = 64 << 20  # bytes of a history or incident log read: its newest lines
SMALL = 1 << 20  # a history up to this size is read whole on an append; past it, once per SMALL appended
RECENT = 4 << 20  # bytes of the history's end read for what changed since the last run (notifications)
_LOCK_WAIT_S = 5.0  # for another run's append; a stopped process holding it cannot hang us


class LockHeld(SmokeError):
    """Another run holds the lock: exit 3, naming it."""


def lock(path: str, wait_s: float = 0.0) -> int:
    """An exclusive flock on path (created), its holder's pid written in it; the fd, which
    holds the lock until it is closed. LockHeld names the holder when another run has it
    for longer than wait_s (0: do not wait)."""
    import fcntl

    fd = fsio.open_lock(path)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() >= deadline:
                holder = _holder(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise LockHeld("%s is held by %s" % (path, holder))
            time.sleep(0.05)
    import re
    held = os.pread(fd, 201, 0)
    if held and not re.fullmatch(rb"pid \d+ since \S+\n", held):  # --lock smoke.json: a typo must not wipe a file
        os.close(fd)
        raise OSError(errno.EEXIST, "exists and is not a lock file (it holds other data): give another path")
    os.ftruncate(fd, 0)
    os.pwrite(fd, ("pid %d since %s\n" % (os.getpid(), _now())).encode(), 0)
    return fd


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.startswith("pid ") else "another run (its pid is not written yet)"


def _now() -> str:
    from checks.model import utc_timestamp
    return utc_timestamp()


def trust(info: os.stat_result, path: str) -> None:
    """fsio.Refused when a user other than us and root could have written the history or
    incident log path (info: the opened file's fstat, never a stat of its name): runs that
    failed, or a rollback that never ran, written in by them would steer what runs as us
    (a notification's escalation, a rollback's triggers and cooldown)."""
    others = fsio.written_by_others(info)
    if others:
        raise fsio.Refused(errno.EPERM, "%s %s: another user could have written in it what never happened (%s)" % (
            path, others, "chmod go-w it" if fsio.ours_or_roots(info) else "it is not ours: move it away"))


def _open(path: str) -> int:
    """path opened to read: a regular file, trusted (trust()); the fd."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block, /dev/zero never ends
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR)) if stat.S_ISDIR(info.st_mode) else \
                OSError(errno.EINVAL, "not a regular file")
        trust(info, path)
        return fd
    except BaseException:
        os.close(fd)
        raise


def tail(path: str, size: int = MAX_READ) -> Tuple[int, bytes]:
    """(the size of a history or incident log, its newest `size` bytes); (0, b"") when there is
    no such file yet; fsio.Refused when another user could have written it (trust())."""
    try:
        fd = _open(path)
    except FileNotFoundError:
        return 0, b""
    try:
        total = os.fstat(fd).st_size
        os.lseek(fd, max(0, total - size), os.SEEK_SET)
        want = min(total, size)
        return total, fsio.read_bounded(fd, want)[:want]  # a line appended meanwhile is the next reader's
    finally:
        os.close(fd)


def _size(path: str) -> int:
    """The history's size; fsio.Refused as tail()'s."""
    try:
        fd = _open(path)
    except FileNotFoundError:
        return 0
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def _strict(line: bytes) -> Optional[Dict[str, Any]]:
    """The JSON object a line holds, or None: not JSON, not an object, NaN, or nested too deep."""
    def refuse(constant):
        raise ValueError(constant)
    try:
        record = json.loads(line.decode("utf-8"), parse_constant=refuse)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def read_lines(path: str, newest: int = MAX_READ) -> Tuple[List[Dict[str, Any]], List[str]]:
    """The JSON objects of a JSON-lines file (its newest `newest` bytes), and what was wrong
    with the rest, in a line or two (a torn last line after a power cut). A missing file is
    empty; one that cannot be read is OSError, one another user could have written fsio.Refused."""
    size, data = tail(path, newest)
    lines = data.split(b"\n")
    if size > newest:
        lines = lines[1:]  # the first is a part of a line
    records, bad, warnings = [], 0, []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = _strict(line)
        if record is not None:
            records.append(record)
        elif number == len(lines):
            warnings.append("%s: its last line is cut short (a write that did not finish): skipped" % path)
        else:
            bad += 1
    if bad:
        warnings.insert(0, "%s: %d line%s not a JSON object: skipped" % (path, bad, " is" if bad == 1 else "s are"))
    return records, warnings


def append_line(path: str, record: Dict[str, Any], make_dirs: bool = False) -> None:
    """One JSON line appended (fsio.append: one write, fsynced, a torn last line ended first)."""
    from checks.model import reportable

    data = (json.dumps(reportable(record), sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
    fsio.append(path, data, make_dirs=make_dirs, line=True)


def record_run(state_dir: str, report: Dict[str, Any], limit: int = DEFAULT_LIMIT, told: bool = True) -> List[str]:
    """Add a report's run to the history (kept to its newest `limit` runs); the problems,
    each one line: a history that cannot be written never changes a verdict. A run costs the
    same whatever the history's size: one up to SMALL is read whole and its lines counted
    (not parsed); a larger one only once per SMALL appended, else appended to unread. Past
    the limit the file is rewritten with its newest 90 %, so not every run after that
    rewrites it. told: False when a notification of this run could not be delivered (the
    next run tells it again)."""
    problems: List[str] = []
    try:
        fsio.private_dir(state_dir)  # ours alone: nobody else plants a history, a lock or a link there
        fd = lock(os.path.join(state_dir, "history.lock"), _LOCK_WAIT_S)
    except (OSError, LockHeld) as exc:
        return ["history: cannot write in %s: %s" % (state_dir, fsio.why(exc))]
    path = os.path.join(state_dir, "history.jsonl")
    try:
        from checks.model import reportable

        line = json.dumps(reportable(run_line(report, told)), sort_keys=True, allow_nan=False).encode("utf-8")
        size = _size(path)
        if SMALL < size and size // SMALL == (size + len(line)) // SMALL:
            fsio.append(path, line + b"\n", line=True)  # a torn last line is ended first
            return problems
        size, data = _newest_lines(path, limit)
        torn = bool(data) and not data.endswith(b"\n")  # a write cut short by a power cut
        if torn:
            problems.append("history: %s: its last line is cut short (a write that did not finish): dropped" % path)
        if torn or data.count(b"\n") >= limit or size > len(data):
            lines = data.split(b"\n")[1 if size > len(data) else 0:]
            kept = [one for one in lines[:-1] if _strict(one) is not None]  # strict JSON objects only
            _rewrite(path, kept[max(0, len(kept) - max(0, int(limit * 0.9) - 1)):] + [line])
        else:
            fsio.append(path, line + b"\n", line=True)
    except fsio.Refused as exc:  # not appended to either: what it holds is not this host's record
        problems.append("history: this run is not recorded: %s" % fsio.why(exc))
    except (OSError, ValueError) as exc:
        problems.append("history: cannot write %s: %s" % (path, fsio.why(exc)))
    except MemoryError:  # the run's own report matters more: it is still printed
        problems.append("history: out of memory: this run was not recorded in %s" % path)
    finally:
        os.close(fd)
    return problems


def _newest_lines(path: str, count: int) -> Tuple[int, bytes]:
    """(the file's size, its end holding at least `count` whole lines, or all of it up to
    MAX_READ): read backwards in growing pieces, so a big history costs what is kept."""
    size, want = 0, 1 << 16
    while True:
        size, data = tail(path, want)
        if len(data) >= size or want >= MAX_READ or data.count(b"\n") > count:
            return size, data
        want = min(MAX_READ, want * 4)


def run_line(report: Dict[str, Any], told: bool = True) -> Dict[str, Any]:
    """A run as the history keeps it: when, what, its verdict, and which checks failed and passed
    ("failing" has the errors too, "passing" the warnings; "erroring" and "warning" say which,
    "flaky" which passed on a retry); a run a signal stopped says so ("interrupted"), and one
    whose notification could not be delivered ("untold")."""
    results = report.get("results") or []
    line = {"time": report.get("started_at"), "command": report.get("command"), "status": report.get("status"),
            "exit_code": report.get("exit_code"), "duration_ms": report.get("duration_ms"),
            "failing": [r["name"] for r in results if r.get("status") in ("fail", "error")],
            "passing": [r["name"] for r in results if r.get("status") in ("pass", "warn")],
            "erroring": [r["name"] for r in results if r.get("status") == "error"],
            "warning": [r["name"] for r in results if r.get("status") == "warn"],
            "flaky": [r["name"] for r in results if r.get("flaky")],
            "selection": report.get("selection")}
    if report.get("interrupted"):
        line["interrupted"] = report["interrupted"]
    if not told:
        line["untold"] = True
    return line


def _rewrite(path: str, lines: List[bytes]) -> None:
    fsio.replace(path, b"".join(line + b"\n" for line in lines if line.strip()), 0o644)


def history(state_dir: str, newest: int = MAX_READ, strict: bool = False) -> Tuple[List[Dict[str, Any]], List[str]]:
    """The runs recorded (those in its newest `newest` bytes), and warnings; a history that
    cannot be read is none, and says why. One in a directory that is not ours alone, or that
    another user could have written (trust()), is not read: they could have written runs that
    never happened. strict: such a refusal is a ConfigError, not a warning (`smoke.py history`:
    "no runs recorded" would say that none were)."""
    path = os.path.join(state_dir, "history.jsonl")
    try:
        fsio.private_dir(state_dir, make=False)
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        if strict:
            raise ConfigError("the history in %s is not read: %s" % (state_dir, fsio.why(exc)))
        return [], ["history: not read from %s: %s" % (state_dir, fsio.why(exc))]
    try:
        return read_lines(path, newest)
    except fsio.Refused as exc:
        if strict:
            raise ConfigError("the history in %s is not read: %s" % (state_dir, fsio.why(exc)))
        return [], ["history: not read: %s" % fsio.why(exc)]
    except (OSError, MemoryError) as exc:
        return [], ["history: cannot read %s: %s" % (path, fsio.why(exc))]


def consecutive_failures(records: List[Dict[str, Any]], command: Optional[str] = None,
                         check: Optional[str] = None) -> int:
    """How many of the newest runs in a row failed: of a command (status fail or error), or
    of one check (runs that did not run it are passed over)."""
    if check is not None:
        return len(failing_streak(records, check))
    count = 0
    for record in reversed(records):
        if command is None or record.get("command") == command:
            if record.get("status") not in ("fail", "error"):
                break
            count += 1
    return count


def failing_streak(records: List[Dict[str, Any]], check: str) -> List[Dict[str, Any]]:
    """The runs of a check's current streak of failures, oldest first (runs that did not run
    it are passed over)."""
    streak: List[Dict[str, Any]] = []
    for record in reversed(records):
        failing, passing = record.get("failing"), record.get("passing")
        if isinstance(failing, list) and check in failing:
            streak.append(record)
        elif isinstance(passing, list) and check in passing:
            break
    return streak[::-1]
