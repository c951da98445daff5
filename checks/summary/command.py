"""`smoke.py summary`: the fleet view of several hosts' JSON reports (which hosts fail which checks,
the worst first) and their perf loads merged into one. It runs no check, so it is not a section
of a config and has none of the run flags; its exit code follows the worst host: 0 when every
host passed, 1 when one failed (or a merged load missed a threshold), 3 when one could not be
evaluated (its report unreadable or not a report, an error, an interrupted run) and none
failed, 2 on bad usage.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List

EXAMPLES = """  python3 smoke.py summary fetched/
  python3 smoke.py summary web-1.json web-2.json web-3.json --format json
  python3 smoke.py summary perf/ --threshold 'rps > 2000' --threshold 'p99_ms < 250' --html fleet.html
"""
SCHEMA = "smoke.summary/1"
STRIP = 60  # hosts drawn in a check's strip of letters, at most
SHOWN = 50  # checks listed in text, at least: those that miss on a host first (all of them, up to LISTED)
LISTED = 1000
SAID = 20  # unreadable reports said on stderr, at most
_LETTERS = {"pass": ".", "warn": "w", "fail": "F", "error": "E", "skip": "s", None: "-"}


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="+", metavar="REPORT|DIR",
                        help="JSON reports (smoke.report/1), or directories of them: DIR/*.json, DIR/HOST/*.json "
                             "(as Ansible's fetch leaves them)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    parser.add_argument("--html", metavar="FILE", help="also write the fleet view as a page")
    parser.add_argument("--threshold", action="append", default=[], metavar="COND",
                        help="judge each perf load merged over the hosts, as perf judges one: 'rps > 2000', "
                             "'p95_ms < 200', 'error_rate < 0.01' (repeatable; the hosts' own thresholds are "
                             "judged too)")


def main(args) -> int:
    from checks import SmokeError
    from checks.cli.terminal import emit, say

    try:
        thresholds = ()
        if args.threshold:
            from checks.perf import _conditions
            thresholds = _conditions(args.threshold, "--threshold", None)
        if args.html is not None:
            from checks import sinks
            sinks.check_report(args.html, "--html")
        doc = build(args.paths, thresholds)
        for line in _said(doc):
            say("smoke.py summary: " + line)
        if args.html is not None:  # before the verdict is printed: a page not written changes the exit code
            from checks import page, sinks
            problem = sinks.write_output(args.html, page.render_fleet(doc))
            if problem:
                say("smoke.py summary: --html: " + problem)
                doc.update(status="error", exit_code=3)
                doc["warnings"].append("--html: " + problem)
        emit(_json(doc) if args.format == "json" else text(doc))
        return doc["exit_code"]
    except SmokeError as exc:
        say("smoke.py summary: error: %s" % exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except MemoryError:  # past one report's (said as that report's problem): the reports together
        say("smoke.py summary: error: out of memory: these reports together need more than this host gives "
            "(ulimit -v?); summarise fewer at a time")
        return 3


def build(paths: List[str], thresholds=()) -> Dict[str, Any]:
    """The fleet view (schema smoke.summary/1) of the reports in paths."""
    from checks import summary
    from checks.summary import load

    missing = [path for path in paths if not os.path.lexists(path)]
    if missing and len(missing) == len(paths):  # a typo, not a host that sent nothing: one of them would be there
        from checks import ConfigError
        raise ConfigError("%s: no such file or directory%s" % (missing[0], " (nor %d more)" % (len(missing) - 1)
                                                                if len(missing) > 1 else ""))
    files, empty = summary.find(paths)
    reports = [summary.read(path, place, home) for path, place, home in files] + empty
    readable = [report for report in reports if report.problem is None]
    hosts = summary.hosts(reports)
    loads = load.loads(readable, thresholds)
    warnings = summary.duplicates(reports) + summary.strays(reports)
    statuses = [row["status"] for row in hosts] + [merged["status"] for merged in loads]
    if thresholds and not loads:
        warnings.append("--threshold: no perf load in these reports to judge it on")
        statuses.append("error")
    status, code = summary.verdict(statuses)
    return {"schema": SCHEMA, "status": status, "exit_code": code, "paths": list(paths), "reports": len(reports),
            "counts": {name: sum(row["status"] == name for row in hosts) for name in ("pass", "warn", "fail",
                                                                                     "error")},
            "hosts": hosts, "checks": summary.checks(readable, [row["host"] for row in hosts]), "loads": loads,
            "warnings": warnings}


def _said(doc: Dict[str, Any]) -> List[str]:
    """On stderr: the reports that are none (the first SAID), and the warnings."""
    bad = [": ".join(dict.fromkeys((row["host"], report["file"], report["problem"]))) for row in doc["hosts"]
           for report in row["reports"] if report["problem"]]  # a file given is its own host: said once
    more = ["and %d more reports that cannot be read" % (len(bad) - SAID)] if len(bad) > SAID else []
    return bad[:SAID] + more + doc["warnings"]


def _json(doc: Dict[str, Any]) -> str:
    from checks.model import reportable
    from checks.render import render_json

    return render_json(reportable(doc))


def _table(rows: List[List[str]]) -> List[str]:
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in rows]


def text(doc: Dict[str, Any]) -> str:
    """The hosts worst first, the checks failing on the most hosts first (a letter per host, in
    the hosts' order), then each merged perf load."""
    from checks.model import cut
    from checks.render import printable as p

    hosts, counts = doc["hosts"], doc["counts"]
    said = ", ".join("%d %s" % (counts[name], name) for name in ("fail", "error", "warn", "pass") if counts[name])
    lines = [p("smoke.py summary: %d host%s (%s) from %s; %s, exit %d" % (
        len(hosts), "" if len(hosts) == 1 else "s", said or "none", " ".join(doc["paths"]), doc["status"].upper(),
        doc["exit_code"]))]
    if not hosts:
        return "\n".join(lines) + "\n"
    rows = [["host", "status", "pass", "warn", "fail", "error", "skip", "command", "started", "failing"]]
    for row in hosts:
        for report in row["reports"]:
            first = report is row["reports"][0]
            missing = report["problem"] and "%s: %s" % (report["file"], report["problem"])
            rows.append([p(row["host"]) if first else "", report["status"].upper()] +
                        [str(row["counts"][name]) if first else "" for name in ("pass", "warn", "fail", "error",
                                                                                 "skip")] +
                        [p(report["command"] or "-"), p(str(report["started_at"] or "-")[:19]),
                         p(cut(missing or (", ".join(row["failing"]) if first else ""), 120))])
    lines += [""] + _table(rows)
    checks = doc["checks"]
    misses = [row for row in checks if row["fail"] or row["error"] or row["warn"]]
    clean = [row for row in checks if not (row["fail"] or row["error"] or row["warn"])]
    shown = misses[:LISTED] + clean[:max(0, SHOWN - len(misses))]
    if shown:
        strip = len(hosts) <= STRIP
        rows = [["check", "section", "misses on", "hosts" if strip else "missed on", "first miss"]]
        for row in shown:
            missed = row["fail"] + row["error"] + row["warn"]
            on = "%d of %d" % (len(missed), len(row["statuses"]) - row["statuses"].count(None))
            rows.append([p(row["name"]), p(row["section"]), on, "".join(_LETTERS[s] for s in row["statuses"])
                         if strip else p(cut(" ".join(missed), 60)), p(cut(row["message"] or "", 100))])
        lines += [""] + _table(rows)
        if strip:
            lines.append("hosts: a letter each, in the order above: . pass  w warn  F fail  E error  s skip  - none")
        left = len(checks) - len(shown)
        if left:
            lines.append("and %d more check%s%s" % (left, "" if left == 1 else "s", "" if len(misses) > LISTED else
                                                    " that misses on no host" if left == 1 else
                                                    " that miss on no host"))
    for merged in doc["loads"]:
        lines += [""] + _load_lines(merged)
    for line in doc["warnings"]:
        lines.append("warning: " + p(line))
    return "\n".join(lines) + "\n"


def _load_lines(merged: Dict[str, Any]) -> List[str]:
    from checks.render import printable as p

    facts = merged["facts"]
    lines = [p("perf %s on %d host%s (%s)%s: %s" % (
        merged["target"], len(merged["hosts"]), "" if len(merged["hosts"]) == 1 else "s", ", ".join(merged["hosts"]),
        ", under way together for %ss" % facts["overlap_s"] if "overlap_s" in facts else "",
        merged["status"].upper()))]
    if merged["status"] != "pass":
        lines.append("  " + p(merged["message"]))
    cells = ["%s %s" % (label, facts[key]) for label, key in (
        ("min", "min_ms"), ("p50", "p50_ms"), ("p90", "p90_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"),
        ("p99.9", "p999_ms"), ("max", "max_ms")) if key in facts]
    source = {"samples": "exact, from the samples kept", "sketch": "from the latency sketches, within %g%%" % (
        100 * facts.get("accuracy", 0))}.get(facts.get("percentiles_from"), "percentiles not merged")
    if cells:
        lines.append("  latency ms: %s  (n %d; %s)" % ("  ".join(cells), facts["n"], source))
    lines.append("  %s req/s (the sum of the hosts'); %d requests, %d errors (%.2f%%)" % (
        facts["rps"], facts["count"], facts["errors"], 100 * facts["error_rate"]))
    if facts["errors_by_kind"]:
        lines.append(p("  errors: " + ", ".join("%s x%d" % item for item in sorted(facts["errors_by_kind"].items()))))
    for condition in merged["expect"]:
        lines.append(p("  threshold %s: observed %s" % (condition, facts["observed"].get(condition, "none"))))
    lines += [p("  not judged: " + line) for line in merged["unjudged"]]
    lines += [p("  left out: %s: %s" % (out["host"], out["why"])) for out in merged["left_out"]]
    lines.append("  per host: " + p("; ".join("%s %s req/s, p95 %s ms" % (row["host"], row["rps"], row["p95_ms"])
                                                for row in merged["per_host"])))
    return lines
