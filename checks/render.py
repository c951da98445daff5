"""Renderers: a report dict in, text out. One function per format, one table of them.

Reports carry bytes from servers, logs and commands. Text output escapes every
control character (ANSI escapes, CR, NUL, bidirectional overrides), so no byte
from outside can move the cursor, recolour or rewrite what a terminal shows.
"""

from __future__ import annotations

import json
import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Callable, Dict, List

from checks.model import cut

# Escaped: every character that is not printable (str.isprintable: C0 and C1 controls,
# DEL, format characters that reorder or hide text, separators, unassigned). Candidates
# are found by a regex over the non-ASCII and control range only; most text has none.
_CANDIDATE = "[^\x20-\x7e]"
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_COLORS = {"PASS": "32", "FAIL": "31", "WARN": "33", "ERROR": "1;31", "SKIP": "2", "INTERRUPTED": "1;33"}
_SNIPPET = 200
_TEXT_FACTS = ("body", "stdout", "stderr", "banner", "last_match")
_BULKY_FACTS = ("json", "headers")  # only when a condition is about them, and json only without a body


def printable(text: Any) -> str:
    """text with every control character written as an escape (\\x1b, \\r, \\u202e)."""
    text = str(text)
    if text.isprintable():
        return text
    return re.sub(_CANDIDATE, _escape, text)


def _escape(match) -> str:
    char = match.group()
    if char.isprintable():
        return char
    code = ord(char)
    return _NAMED.get(char) or ("\\x%02x" % code if code < 0x100 else "\\u%04x" % code if code < 0x10000
                                else "\\U%08x" % code)


def render_json(report: Dict[str, Any], color: bool = False) -> str:
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if text.isascii():
        return text
    # json.dumps escaped C0; what else is not printable can only be inside a string: escape it there
    return re.sub("[^\x00-\x7e]", lambda m: m.group() if m.group().isprintable() else json.dumps(m.group())[1:-1],
                  text)


def render_text(report: Dict[str, Any], color: bool = False) -> str:
    """One line per check; under each miss, its evidence."""
    paint = _painter(color)
    lines = [printable("smoke.py %s on %s at %s" % (report["command"], report["host"], report["started_at"]))]
    names = [printable(r["name"]) for r in report["results"]]
    width = max([len(name) for name in names] + [4])
    for result, name in zip(report["results"], names):
        label = result["status"].upper()
        line = "%s %-*s  %-10s %8.1f ms" % (paint(label, "%-5s" % label), width, name, printable(result["kind"]),
                                           result["duration_ms"])
        if result.get("flaky"):
            line += "  flaky: passed on attempt %d" % result["attempts"]
        if result["status"] in ("skip", "pass") and result["message"]:
            line += "  " + printable(result["message"])
        lines.append(line)
        if result["kind"] == "perf" and result.get("section") == "perf":  # its own table says the rest
            if result["status"] in ("fail", "warn", "error"):
                lines.append("      " + printable(result["message"]))
            if result["facts"].get("count"):
                lines.extend("      " + printable(line) for line in _load_lines(result))
        elif result["status"] in ("fail", "warn", "error"):
            lines.extend("      " + printable(evidence) for evidence in _evidence(result))
    for problem in report.get("problems", []):
        lines.append(paint("ERROR", "PROBLEM") + " " + printable(problem))
    summary = report["summary"]
    verdict = report["status"].upper()
    tail = "%s  %d check%s: %d pass, %d warn, %d fail, %d error, %d skip (pass rate %.2f) in %.1f s; exit %d" % (
        paint(verdict, verdict), summary["total"], "" if summary["total"] == 1 else "s", summary["pass"],
        summary["warn"], summary["fail"], summary["error"], summary["skip"], summary["pass_rate"],
        report["duration_ms"] / 1000, report["exit_code"])
    if report.get("interrupted"):
        tail = paint("INTERRUPTED", "INTERRUPTED by %s" % report["interrupted"]) + "; " + tail
    lines.append(tail)
    return "\n".join(lines) + "\n"


def _load_lines(result: Dict[str, Any]) -> List[str]:
    """A perf result as a table: percentiles, rate, errors by kind, each threshold with what
    was observed, and a histogram of the latencies (log-scaled buckets)."""
    facts = result["facts"]
    cells = ["%s %s" % (label, facts[key]) for label, key in (
        ("min", "min_ms"), ("p50", "p50_ms"), ("p90", "p90_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"),
        ("p99.9", "p999_ms"), ("max", "max_ms")) if key in facts]
    out = ["latency ms: " + "  ".join(cells) + "  (n %d)" % facts.get("n", 0)] if cells else []
    out.append("%s req/s over %ss; %d requests, %d errors (%.2f%%)" % (
        facts["rps"], facts["duration_s"], facts["count"], facts["errors"], facts["error_rate"] * 100))
    if facts.get("errors_by_kind"):
        out.append("errors: " + ", ".join("%s x%d" % item for item in sorted(facts["errors_by_kind"].items())))
    observed = facts.get("observed") or {}  # perf judged each threshold and kept what it saw: not re-parsed here
    for condition in result.get("expect", []):
        out.append("threshold %s: observed %s" % (condition, observed.get(condition, "none")))
    histogram = facts.get("histogram") or []
    most = max([count for _, count in histogram] + [1])
    for bound, count in histogram:
        out.append("%10.3f ms |%-40s %d" % (bound, "#" * int(round(40.0 * count / most)), count))
    return out


def _painter(color: bool) -> Callable[[str, str], str]:
    if not color:
        return lambda label, text: text
    return lambda label, text: "\x1b[%sm%s\x1b[0m" % (_COLORS.get(label, "0"), text)


def _evidence(result: Dict[str, Any]):
    """The message, then the facts that explain it: short ones whole, text as a snippet."""
    message, facts = result["message"], result["facts"]
    yield message
    subjects = [part.split(":", 1)[0] for part in message.split("; ")]
    texts = []
    for key, value in facts.items():
        if key in _TEXT_FACTS:
            texts.append(key)
            continue
        if key in subjects or (key == "error" and str(value) in message) or value in ([], {}, ""):
            continue  # the message already says it, or there is nothing to say
        if key in _BULKY_FACTS and (key == "json" and "body" in facts
                                    or not any(s.startswith(key + ".") or s == key for s in subjects)):
            continue
        yield "%s: %s" % (key, cut(json.dumps(value, ensure_ascii=False), _SNIPPET))
    for key in texts:
        text = facts[key]
        if isinstance(text, str) and text.strip():
            yield "%s: %s" % (key, cut(" ".join(text.split()), _SNIPPET))
    if result["attempts"] > 1:
        yield "attempts: %d" % result["attempts"]


RENDERERS: Dict[str, Callable[..., str]] = {
    "json": render_json,
    "text": render_text,
}
