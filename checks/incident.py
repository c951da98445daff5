"""The incident record of a rollback: one JSON line per decision in incidents.jsonl (what
fired, what was done, how it ended) and, when asked, a human line in rollback_log.

A rollback never acts without a record of it: the logs are checked writable first, a
"started" line is written before the first step (a full disk or kill -9 later cannot
leave it unrecorded), and each line is one fsynced write. The last line that ran steps
is the cooldown's clock.
"""

from __future__ import annotations

import math
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Callable, Dict, List, Optional, Tuple

    from checks.model import Result

from checks import fsio, state
from checks.model import cut

_FUTURE_S = 300  # a record stamped later than this is a wrong clock's, or another host's


def writable(incident_log: str, rollback_log: Optional[str]) -> Optional[str]:
    """Why the incident could not be recorded (checked before anything is done), or None.
    Their directories are made, as a log's are on a fresh host. An incident log that another
    user could have written is not read (state.trust(), judged on the file opened): a line of
    theirs saying a rollback ran would hold every rollback back for a cooldown."""
    import stat

    for path in (incident_log, rollback_log):
        if path is None:
            continue
        try:
            fd = fsio.open_append(path, make_dirs=True)
        except OSError as exc:
            return "cannot record the incident in %s: %s" % (path, fsio.why(exc))
        try:
            info = os.fstat(fd)
            if path == incident_log and stat.S_ISREG(info.st_mode):  # /dev/null holds no rollback
                state.trust(info, path)
        except OSError as exc:
            return "the incident log is not read: %s" % fsio.why(exc)
        finally:
            os.close(fd)
    return None


def last_rollback(incident_log: str) -> Tuple[Optional[float], str]:
    """When the last rollback that ran its steps started (epoch), and how it ended. A line it
    reads that gives a key twice is a ConfigError naming it: which one the cooldown would count
    is anybody's guess (a line that is not JSON, a torn one, is skipped)."""
    try:
        size, data = state.tail(incident_log)  # not one another user could have written (writable())
    except OSError:
        return None, ""
    lines = data.split(b"\n")[1 if size > state.MAX_READ else 0:]
    now = time.time()
    for number in range(len(lines), 0, -1):
        record = _record(lines[number - 1], "%s, line %d%s" % (
            incident_log, number, " of its newest %d MB" % (state.MAX_READ >> 20) if size > state.MAX_READ else ""))
        if record is None:
            continue
        epoch = record.get("epoch")
        # a clock that was wrong, or a log from elsewhere, must not block rollbacks for a year
        if record.get("executed") is True and isinstance(epoch, (int, float)) and not isinstance(epoch, bool) \
                and math.isfinite(epoch) and epoch <= now + _FUTURE_S:
            return float(epoch), str(record.get("outcome") or "outcome unknown")
    return None, ""


def _record(line: bytes, where: str) -> Optional[Dict[str, Any]]:
    """The JSON object a line holds, or None (not JSON, not an object); ConfigError when it
    gives a key twice."""
    import json

    from checks.config import parse_json
    try:
        record = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return parse_json(line.decode("utf-8"), where) if isinstance(record, dict) else None


def started(entry: Dict[str, Any], redact: Callable[[Any], Any]) -> None:
    """The line written before the first step; OSError (or ValueError) when it cannot be."""
    state.append_line(entry["incident_log"], redact(dict(entry, outcome="started", executed=True)))


def steps(done: List[Result]) -> List[Dict[str, Any]]:
    """What each step did, as the record keeps it: status, exit code or HTTP status, output."""
    out = []
    for result in done:
        facts = result.facts or {}
        output = "\n".join(str(facts[key]) for key in ("stdout", "stderr") if facts.get(key))
        out.append({"name": result.name, "status": result.status, "exit_code": facts.get("exit_code"),
                    "http_status": facts.get("status"), "duration_ms": round(result.duration_ms, 1),
                    "message": result.message, "output": cut(output, 1000)})
    return out


def record(entry: Dict[str, Any], outcome: str, took: float, time_budget: float, rollback_log: Optional[str],
           forced: bool, redact: Callable[[Any], Any]) -> Tuple[List[str], List[str]]:
    """Append the incident line and the human line, each fsynced: (problems, the logs written)."""
    from checks.render import printable  # a newline in an observed value must not forge a second line

    entry.update(outcome=outcome, duration_s=round(took, 3), over_budget=took > time_budget,
                  executed=bool(entry["steps"]))
    entry = redact(entry)
    problems, logs = [], [entry["incident_log"]] + ([rollback_log] if rollback_log else [])
    try:
        state.append_line(entry["incident_log"], entry, make_dirs=True)
    except OSError as exc:
        problems.append("cannot record the incident in %s: %s" % (entry["incident_log"], fsio.why(exc)))
    if rollback_log:
        marks = [] if entry["executed"] else [outcome]
        marks += ["forced"] if forced and entry["executed"] else []
        line = "ROLLBACK%s: %s - Reason: %s - %s" % (" (%s)" % ", ".join(marks) if marks else "", time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry["epoch"])), entry["reasons"], outcome)
        try:
            fsio.append(rollback_log, (printable(line) + "\n").encode("utf-8", "replace"), make_dirs=True)
        except OSError as exc:
            problems.append("cannot write rollback_log %s: %s" % (rollback_log, fsio.why(exc)))
    return problems, logs


def span(seconds: float) -> str:
    """A duration as a person reads it: 42.0s, 3m05s, 2h10m."""
    if seconds < 120:
        return "%.1fs" % seconds
    if seconds < 7200:
        return "%dm%02ds" % (seconds // 60, seconds % 60)
    return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)
