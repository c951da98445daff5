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
    from typing import Any, Callable, Dict, List, Optional

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


PRETTY_RESULTS = 1000
_LAST: List[Any] = [None, ""]  # the results last written a line each, and their lines


def _result_lines(results: List[Dict[str, Any]]) -> str:
    """The results, a line each: one C call for them all, then a break before each (every result
    begins {"name": and a JSON string holds no bare quote, so a break is made only between
    results, or harmlessly inside facts). A report is rendered twice (its file staged, then
    written) with the same results: their text is kept for the second time."""
    if _LAST[0] is not results:
        _LAST[:] = [results, json.dumps(results, ensure_ascii=False)[1:-1].replace('}, {"name": ',
                                                                                    '},\n    {"name": ')]
    return _LAST[1]


def render_json(report: Dict[str, Any], color: bool = False) -> str:
    """The report as JSON, indented; past PRETTY_RESULTS results, one result per line (no one
    reads a million indented lines, and before 3.13 only unindented JSON has the C encoder)."""
    results = report.get("results") or []
    if len(results) <= PRETTY_RESULTS:
        text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    else:
        skeleton = json.dumps(dict(report, results=[]), indent=2, ensure_ascii=False)
        lines = _result_lines(results)
        # the top level's key: two spaces, where a nested one has more (and a string has no newline)
        text = skeleton.replace('\n  "results": []', '\n  "results": [\n    %s\n  ]' % lines, 1) + "\n"
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


# XML 1.0 has no way to write these, not even escaped: they are shown as \xNN instead
_NOT_XML = "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"
_PERFDATA = 3000  # characters of perfdata on the status line
_NAGIOS_OUTPUT = 8000  # characters of the whole output
_NAGIOS = {"pass": "OK", "warn": "WARNING", "fail": "CRITICAL", "error": "UNKNOWN"}


def _xml(text: Any, attribute: bool = True) -> str:
    """Text for XML: escaped, and in an attribute its line breaks kept as references (a
    parser would turn them into spaces)."""
    text = re.sub(_NOT_XML, lambda m: "\\x%02x" % ord(m.group()) if ord(m.group()) < 0x100 else
                  "\\u%04x" % ord(m.group()), str(text))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return text.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;") if attribute else text


def _beyond_results(report: Dict[str, Any]) -> Optional[str]:
    """Why the run is worse than every one of its results says (a signal stopped it, a report
    file could not be written), or None: a reader that counts results must not see a pass."""
    if report["status"] in ("pass", "warn") or any(r["status"] in ("fail", "error") for r in report["results"]):
        return None
    if report.get("interrupted"):
        return "interrupted by %s" % report["interrupted"]
    return (report.get("problems") or ["the run's status is %s" % report["status"]])[0]


def render_junit(report: Dict[str, Any], color: bool = False) -> str:
    """JUnit XML as GitHub's, GitLab's and Jenkins' readers take it: a testsuite per section,
    a testcase per result; failure, error and skipped with the one-line message, and the
    evidence as the element's text."""
    sections: Dict[str, List[Dict[str, Any]]] = {}
    for result in report["results"]:
        sections.setdefault(result["section"], []).append(result)
    stamp = report["started_at"].rstrip("Z")[:19]

    def counts(results):
        statuses = [r["status"] for r in results]
        return 'tests="%d" failures="%d" errors="%d" skipped="%d" time="%.3f"' % (
            len(results), statuses.count("fail"), statuses.count("error"), statuses.count("skip"),
            sum(r["duration_ms"] for r in results) / 1000.0)

    beyond = _beyond_results(report)
    run = [{"status": "error", "duration_ms": 0}] if beyond else []
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<testsuites name="%s" %s>' % (_xml("smoke.py " + report["command"]), counts(report["results"] + run))]
    for index, (section, results) in enumerate(sections.items()):
        out.append('  <testsuite name="%s" %s timestamp="%s" hostname="%s">' % (
            _xml(section), counts(results), stamp, _xml(report["host"])))
        for result in results:
            out.append('    <testcase name="%s" classname="%s" time="%.3f">' % (
                _xml(result["name"]), _xml("smoke.%s" % section), result["duration_ms"] / 1000.0))
            tag = {"fail": "failure", "error": "error", "skip": "skipped"}.get(result["status"])
            if tag == "skipped":
                out.append('      <skipped message="%s"/>' % _xml(result["message"]))
            elif tag:
                out.append('      <%s message="%s" type="%s">%s</%s>' % (
                    tag, _xml(result["message"]), result["status"], _xml("\n".join(_evidence(result)), False), tag))
            elif result["status"] == "warn" or result.get("flaky"):
                out.append("      <system-out>%s</system-out>" % _xml(
                    "%s: %s" % ("flaky" if result.get("flaky") else "warn", result["message"]), False))
            out.append("    </testcase>")
        if index == 0 and report.get("problems"):
            out.append("    <system-err>%s</system-err>" % _xml("\n".join(report["problems"]), False))
        out.append("  </testsuite>")
    if beyond:  # a testcase of its own, so a CI that counts errors does not read a pass
        out += ['  <testsuite name="report" %s timestamp="%s" hostname="%s">' % (counts(run), stamp, _xml(report["host"])),
                '    <testcase name="the run" classname="smoke.report" time="0.000">',
                '      <error message="%s" type="error"/>' % _xml(beyond), "    </testcase>", "  </testsuite>"]
    out.append("</testsuites>")
    return "\n".join(out) + "\n"


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_prometheus(report: Dict[str, Any], color: bool = False) -> str:
    """The Prometheus text format, for node_exporter's textfile collector or a Pushgateway:
    gauges per check and per run, perf's percentiles and heartbeat's detection time."""
    import calendar
    import time

    from checks.model import selection_text

    command = report["command"]
    # a run chosen by --tag has its own series: an hourly and a daily file side by side do not collide
    chosen = (("selection", selection_text(report["selection"])),) if report.get("selection") else ()
    series: Dict[str, List[str]] = {}
    helps = {
        "smoke_check_success": "Whether the check passed (1; a warning counts) or not (0).",
        "smoke_check_duration_seconds": "How long the check took.",
        "smoke_check_flaky": "Whether the check passed only after a retry.",
        "smoke_run_success": "Whether the run's verdict was pass (or warn).",
        "smoke_run_timestamp_seconds": "When the run started, in seconds since the epoch.",
        "smoke_run_duration_seconds": "How long the run took.",
        "smoke_perf_latency_seconds": "The latency percentiles of a perf target (answers counted).",
        "smoke_perf_requests_per_second": "Answers per second of a perf target.",
        "smoke_perf_error_rate": "The share of a perf target's requests that failed.",
        "smoke_heartbeat_detection_seconds": "How long after the kill the failure was detected.",
    }

    def add(name, labels, value, family=None):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        text = ",".join('%s="%s"' % (key, _label(val)) for key, val in labels)
        series.setdefault(family or name, []).append("%s{%s} %s" % (name, text, repr(round(float(value), 6))))

    seen = set()
    for result in report["results"]:
        key = (result["section"], result["name"])
        if key in seen or result["status"] == "skip":  # one series per check; a skipped one says nothing
            continue
        seen.add(key)
        labels = (("command", command),) + chosen + (("section", result["section"]), ("check", result["name"]))
        add("smoke_check_success", labels, int(result["status"] in ("pass", "warn")))
        add("smoke_check_duration_seconds", labels, result["duration_ms"] / 1000.0)
        add("smoke_check_flaky", labels, int(bool(result.get("flaky"))))
    run = (("command", command),) + chosen
    add("smoke_run_success", run, int(report["status"] in ("pass", "warn")))
    started = calendar.timegm(time.strptime(report["started_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    add("smoke_run_timestamp_seconds", run, started + int(report["started_at"][20:23] or 0) / 1000.0)
    add("smoke_run_duration_seconds", run, report["duration_ms"] / 1000.0)
    perf = (report.get("metrics") or {}).get("perf") or {}
    for target, facts in sorted((perf.get("targets") or {}).items()):
        latency = "smoke_perf_latency_seconds"  # a summary: its quantiles, then _sum and _count, as promtool wants
        for quantile in ("50", "90", "95", "99", "999"):
            if isinstance(facts.get("p%s_ms" % quantile), (int, float)):
                add(latency, run + (("target", target), ("quantile", "0." + quantile)),
                    facts["p%s_ms" % quantile] / 1000.0)
        if latency in series and isinstance(facts.get("n"), int) and isinstance(facts.get("mean_ms"), (int, float)):
            add(latency + "_sum", run + (("target", target),), facts["mean_ms"] * facts["n"] / 1000.0, latency)
            add(latency + "_count", run + (("target", target),), facts["n"], latency)
        add("smoke_perf_requests_per_second", run + (("target", target),), facts.get("rps"))
        add("smoke_perf_error_rate", run + (("target", target),), facts.get("error_rate"))
    heartbeat = (report.get("metrics") or {}).get("heartbeat") or {}
    add("smoke_heartbeat_detection_seconds", run, heartbeat.get("detection_s"))
    out = []
    for name, lines in series.items():
        out += ["# HELP %s %s" % (name, helps[name]),
                "# TYPE %s %s" % (name, "summary" if name == "smoke_perf_latency_seconds" else "gauge")] + lines
    return "\n".join(out) + "\n"


def render_nagios(report: Dict[str, Any], color: bool = False) -> str:
    """A Nagios plugin's output: one status line with perfdata, then a line per miss
    (--format nagios also makes the exit code Nagios's)."""
    def clean(text):  # | starts perfdata; a status line is one line
        return printable(str(text).replace("|", "/")).replace("\\n", " ")

    results = report["results"]
    ran = [r for r in results if r["status"] != "skip"]
    bad = {status: [r for r in ran if r["status"] == status] for status in ("fail", "error", "warn")}
    state = "UNKNOWN" if report.get("interrupted") else _NAGIOS.get(report["status"], "UNKNOWN")
    if report.get("interrupted"):
        summary = "interrupted by %s" % report["interrupted"]
    elif bad["fail"]:
        summary = "%d/%d failed: %s" % (len(bad["fail"]), len(ran), ", ".join(r["name"] for r in bad["fail"][:5]))
    elif bad["error"]:
        summary = "%d/%d could not be checked: %s" % (len(bad["error"]), len(ran),
                                                     ", ".join(r["name"] for r in bad["error"][:5]))
    elif bad["warn"]:
        summary = "%d/%d warned: %s" % (len(bad["warn"]), len(ran), ", ".join(r["name"] for r in bad["warn"][:5]))
    else:
        beyond = _beyond_results(report)
        summary = "%d/%d passed%s" % (len(ran), len(ran), ", but the run did not: " + beyond if beyond else "")
    perfdata = " ".join("'%s'=%.1fms;;;0;" % (re.sub("['=|]", "_", cut(printable(r["name"]), 60)), r["duration_ms"])
                        for r in ran)
    if len(perfdata) > _PERFDATA:  # Nagios and NRPE cut a plugin's output at a few KB, mid-label
        perfdata = perfdata[:perfdata.rfind(" ", 0, _PERFDATA)]
    lines = ["SMOKE %s - %s%s" % (state, cut(clean(summary), 500), " | " + perfdata if perfdata else "")]
    for result in bad["fail"] + bad["error"] + bad["warn"]:
        lines.append(cut(clean("%s %s: %s" % (result["status"].upper(), result["name"], result["message"])), 1000))
    lines += [cut(clean("problem: " + problem), 1000) for problem in report.get("problems", [])]
    text = "\n".join(lines)
    if len(text) > _NAGIOS_OUTPUT:  # what Nagios and NRPE keep of a plugin's output
        text = text[:text.rfind("\n", 0, _NAGIOS_OUTPUT)] + "\n... (more in the JSON report)"
    return text + "\n"


def render_tap(report: Dict[str, Any], color: bool = False) -> str:
    """TAP version 13: ok / not ok per result, a skip directive, and a YAML block per miss."""
    results = report["results"]
    beyond = _beyond_results(report)
    out = ["TAP version 13", "1..%d" % (len(results) + bool(beyond))]
    for number, result in enumerate(results, 1):
        # a backslash first, then #: a name cannot end its own escape and start a SKIP or TODO
        name = printable("%s/%s" % (result["section"], result["name"])).replace("\\", "\\\\").replace("#", "\\#")
        if result["status"] == "skip":
            out.append("ok %d - %s # SKIP %s" % (number, name, printable(result["message"]).replace("#", "")))
            continue
        ok = result["status"] in ("pass", "warn")
        out.append("%s %d - %s" % ("ok" if ok else "not ok", number, name))
        if not ok or result["status"] == "warn":
            out += ["  ---", "  status: %s" % result["status"],
                    "  message: %s" % json.dumps(result["message"]), "  severity: %s" % result["severity"],
                    "  duration_ms: %s" % round(result["duration_ms"], 1), "  ..."]
    if beyond:  # a line of its own, so a harness that counts "not ok" does not read a pass
        out += ["not ok %d - the run" % (len(results) + 1), "  ---", "  status: error",
                "  message: %s" % json.dumps(beyond), "  ..."]
    out += ["# problem: %s" % printable(problem) for problem in report.get("problems", [])]
    out.append("# %s: %s" % (report["status"], json.dumps(report["summary"])))
    return "\n".join(out) + "\n"


RENDERERS: Dict[str, Callable[..., str]] = {
    "json": render_json,
    "text": render_text,
    "junit": render_junit,
    "prometheus": render_prometheus,
    "nagios": render_nagios,
    "tap": render_tap,
}
