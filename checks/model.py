"""Checks, results, reports, the verdict and the exit codes: pure data, no I/O."""

from __future__ import annotations

import collections
import json
import math
import re
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

SCHEMA = "smoke.report/1"
STATUSES = ("pass", "warn", "fail", "error", "skip")
SEVERITIES = ("critical", "normal", "warning")
MAX_DEPTH = 32  # levels of a fact kept in a report; deeper is cut (a server may send 5000)
_SURROGATE = "[\ud800-\udfff]"  # compiled on first use, by re's cache: most text is ASCII


# The signals a run handles (lifecycle.Signals), and the exit codes they end it with.
SIGNAL_NAMES = {1: "SIGHUP", 2: "SIGINT", 15: "SIGTERM"}  # the same numbers on every Linux and BSD


class ExitCode:
    """The exit codes, by name (plain ints: an IntEnum costs every start a class to build)."""

    PASS = 0
    FAIL = 1
    USAGE = 2
    UNKNOWN = 3
    SIGHUP = 129
    SIGINT = 130
    SIGTERM = 143


DEFAULT_TIMEOUT = 10.0
# Bounds of the per-check numbers, wherever they are given (config or flag): beyond them
# a value is a typo, and near float's limits it would overflow the clocks it feeds.
MAX_TIMEOUT_S = 86400.0
MAX_RETRIES = 100
MAX_RETRY_DELAY_S = 3600.0
_GRACE_S = 2.0  # beyond a check's budget before the runner gives up on its probe


class Check(collections.namedtuple("Check", "name section kind probe expect target timeout retries retry_delay "
                                            "severity tags until interval on_no_data",
                                    defaults=("", DEFAULT_TIMEOUT, 0, 1.0, "normal", (), (), 1.0, "expect"))):
    """A named probe ((timeout_s, run context) -> facts) and its conditions, with its timeout,
    retries and tags; with `until` conditions, polled every `interval` within the timeout.
    on_no_data: what facts that say no_data (an empty answer) are, when not "expect" (judged
    by the conditions): "fail", "error" or "pass", whatever the conditions say."""

    __slots__ = ()

    def budget(self) -> float:
        if self.until:
            return self.timeout + _GRACE_S
        return (self.timeout * (self.retries + 1) + self.retry_delay * self.retries) + _GRACE_S


class Planned(collections.namedtuple("Planned", "name section kind target expect tags severity options needs always",
                                     defaults=((), (), "normal", "", (), False))):
    """One step of a subcommand's plan: what --dry-run shows and --only and --tag choose from.
    needs: the steps it takes values from, chosen with it; always: chosen with what it needs."""

    __slots__ = ()


class Outcome(collections.namedtuple("Outcome", "results metrics problems", defaults=({}, ()))):
    """What a subcommand's run gives: its results, its numbers for report.metrics, and what it
    could not undo (report.problems: what was left behind)."""

    __slots__ = ()


class Result(collections.namedtuple("Result", "name section kind status message duration_ms attempts tags "
                                              "severity facts flaky target expect",
                                     defaults=("", 0.0, 0, (), "normal", {}, False, "", ()))):
    """One check's outcome; immutable, serialised the same way everywhere."""

    __slots__ = ()

    def to_dict(self) -> Dict[str, Any]:
        out = {
            "name": self.name, "section": self.section, "kind": self.kind, "target": self.target,
            "status": self.status, "severity": self.severity,
            "duration_ms": round(self.duration_ms, 1), "attempts": self.attempts,
            "tags": list(self.tags), "expect": list(self.expect), "message": self.message, "facts": self.facts,
        }
        if self.flaky:
            out["flaky"] = True
        return out


def cut(text: str, limit: int) -> str:
    """An excerpt of outside text, marked with "…" where it was cut: secrets.Secrets masks
    a secret's first characters left before that mark."""
    return text if len(text) <= limit else text[:limit] + "\u2026"


_PLAIN = frozenset((int, bool, type(None)))  # exactly these types (not a subclass): JSON as they are


def reportable(value: Any, depth: int = 0) -> Any:
    """value as plain JSON data that any encoder accepts, whatever bytes it came from.

    Lone surrogates (JSON's "\\ud800") become U+FFFD, NaN and infinities become their
    names (JSON has none), nesting past MAX_DEPTH becomes a marker, anything else text.
    """
    if isinstance(value, str):
        return value if value.isascii() else re.sub(_SURROGATE, "\ufffd", value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, (dict, list, tuple)) and depth >= MAX_DEPTH:
        return "… (nested deeper than %d levels)" % MAX_DEPTH
    if isinstance(value, dict):  # the common leaves inline: a 10,000-result report is 400,000 of them
        return {(k if type(k) is str and k.isascii() else reportable(str(k))):
                (v if type(v) in _PLAIN or type(v) is str and v.isascii() else reportable(v, depth + 1))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _PLAIN or type(v) is str and v.isascii() else reportable(v, depth + 1)
                for v in value]
    return reportable(str(value))


def summarize(results: List[Result]) -> Dict[str, Any]:
    counts = {status: 0 for status in STATUSES}
    for result in results:
        counts[result.status] += 1
    evaluated = len(results) - counts["skip"]
    # A warning is reported but does not count against the verdict.
    passed = counts["pass"] + counts["warn"]
    rate = round(passed / evaluated, 4) if evaluated else 0.0
    return dict(total=len(results), **counts, pass_rate=rate)


def verdict(results: List[Result], min_pass_rate: float = 1.0,
            section_rates: Optional[Dict[str, float]] = None) -> Tuple[str, ExitCode]:
    """pass/warn/fail/error and its exit code; no evaluated results is never a pass. warn is a
    pass whose only shortfalls are warnings (the Nagios exit policy tells it apart).

    Each section's pass rate must reach its own rate (section_rates), else min_pass_rate,
    and every critical check must pass. A run that misses only through `error` results
    (we could not check: no fd left, no daemon) is `error`, exit 3: exit 1 says the
    system under test is broken, and a deploy gate rolls back on it.
    """
    summary = summarize(results)
    evaluated = summary["total"] - summary["skip"]
    if evaluated == 0 or summary["error"] == evaluated:  # whatever min_pass_rate says
        return "error", ExitCode.UNKNOWN
    if not _misses(results, min_pass_rate, section_rates, ("pass", "warn")):  # warn: passed, short of warnings
        return ("warn" if summary["warn"] else "pass"), ExitCode.PASS
    if _misses(results, min_pass_rate, section_rates, ("pass", "warn", "error")):
        return "fail", ExitCode.FAIL  # the failures alone miss it
    return "error", ExitCode.UNKNOWN


def _misses(results: List[Result], min_pass_rate: float, section_rates: Optional[Dict[str, float]],
            passed: Tuple[str, ...]) -> bool:
    """Whether the results miss the verdict, counting the statuses in `passed` as passing."""
    if any(r.severity == "critical" and r.status not in passed + ("skip",) for r in results):
        return True
    for section in dict.fromkeys(r.section for r in results):
        ran = [r for r in results if r.section == section and r.status != "skip"]
        rate = (section_rates or {}).get(section, min_pass_rate)
        if ran and sum(r.status in passed for r in ran) / len(ran) < rate:
            return True
    return False


PASSING = ("pass", "warn")  # verdicts that exit 0 under the smoke policy
NAGIOS_CODES = {"pass": 0, "warn": 1, "fail": 2, "error": 3}  # OK, WARNING, CRITICAL, UNKNOWN


def exit_code(report: Dict[str, Any], policy: str = "smoke") -> int:
    """The process's exit code for a report: smoke's (0 1 2 3 129 130 143), or Nagios's
    (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: an interrupted run is UNKNOWN)."""
    if policy != "nagios":
        return int(report["exit_code"])
    if report.get("interrupted"):
        return 3
    return NAGIOS_CODES.get(report["status"], 3)


def selection_text(selection: Dict[str, Any]) -> str:
    """A run's selection, --tag hourly --skip-tag slow, as "+hourly -slow" (--only NAME: "=NAME")."""
    return " ".join(["+" + t for t in selection.get("tag", ())] + ["-" + t for t in selection.get("skip_tag", ())]
                    + ["=" + n for n in selection.get("only", ())])


def utc_timestamp(epoch: Optional[float] = None) -> str:
    epoch = time.time() if epoch is None else epoch
    millis = int(epoch * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + ".%03dZ" % millis


def build_report(command: str, results: List[Result], host: str, started_at: float, duration_ms: float,
                 min_pass_rate: float = 1.0, interrupted: Optional[int] = None,
                 section_rates: Optional[Dict[str, float]] = None,
                 metrics: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The smoke.report/1 document; an interrupted run keeps its partial results."""
    from checks import __version__

    status, code = verdict(results, min_pass_rate, section_rates)
    report: Dict[str, Any] = {
        "schema": SCHEMA, "tool": {"name": "smoke.py", "version": __version__},
        "command": command, "host": host, "started_at": utc_timestamp(started_at),
        "duration_ms": round(duration_ms, 1), "status": status, "exit_code": int(code),
        "summary": summarize(results), "metrics": metrics or {}, "results": [r.to_dict() for r in results],
        # what the verdict was held to, so a pass with failures in it explains itself
        "min_pass_rate": {section: (section_rates or {}).get(section, min_pass_rate)
                          for section in dict.fromkeys(r.section for r in results)},
    }
    if interrupted is not None:
        interrupt(report, interrupted)
    return report if _plain_json(report) else reportable(report)


def _plain_json(report: Dict[str, Any]) -> bool:
    """Whether the report is JSON as it stands (JSON's types only, no NaN, no character that
    is not text): the C encoder tells in a fraction of reportable()'s walk, which a report
    of 10,000 results would otherwise take (its facts were made reportable as they came)."""
    try:
        text = json.dumps(report, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return "\\ud" not in text  # a lone surrogate, or an astral character's pair: walked to tell them apart


def interrupt(report: Dict[str, Any], signum: int) -> None:
    """Mark a report interrupted by a signal: what ran may have passed; the run as a whole was
    not judged, and exits with the signal's code."""
    name = SIGNAL_NAMES[signum]
    report.update(status="error", interrupted=name, exit_code=getattr(ExitCode, name))
