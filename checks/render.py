"""Renderers: a report dict in, text out. One function per format, one table of them."""

import json
from typing import Any, Callable, Dict

def render_json(report: Dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def render_text(report: Dict[str, Any]) -> str:
    """One line per check; under each failure, its evidence."""
    lines = ["smoke.py %s on %s at %s" % (report["command"], report["host"], report["started_at"])]
    width = max([len(r["name"]) for r in report["results"]] + [4])
    for result in report["results"]:
        line = "%-5s %-*s  %-10s %8.1f ms" % (result["status"].upper(), width, result["name"], result["kind"],
                                            result["duration_ms"])
        if result.get("flaky"):
            line += "  flaky: passed on attempt %d" % result["attempts"]
        if result["status"] in ("skip", "pass") and result["message"]:
            line += "  " + result["message"]
        lines.append(line)
        if result["status"] in ("fail", "warn", "error"):
            lines.extend(_evidence(result))
    summary = report["summary"]
    tail = "%s  %d check%s: %d pass, %d warn, %d fail, %d error, %d skip (pass rate %.2f) in %.1f s; exit %d" % (
        report["status"].upper(), summary["total"], "" if summary["total"] == 1 else "s", summary["pass"], summary["warn"], summary["fail"],
        summary["error"], summary["skip"], summary["pass_rate"], report["duration_ms"] / 1000, report["exit_code"])
    if report.get("interrupted"):
        tail = "INTERRUPTED by %s; " % report["interrupted"] + tail
    lines.append(tail)
    return "\n".join(lines) + "\n"


def _evidence(result: Dict[str, Any]):
    yield "      %s" % result["message"]
    facts = result["facts"]
    for key in ("status", "exit_code", "latency_ms", "count", "error"):
        already = key + ":" in result["message"] or (key == "error" and str(facts.get(key)) in result["message"])
        if key in facts and not already:
            yield "      %s: %s" % (key, json.dumps(facts[key]))
    for key in ("body", "stdout", "stderr", "last_match"):
        text = facts.get(key)
        if isinstance(text, str) and text.strip():
            snippet = " ".join(text.split())
            yield "      %s: %s" % (key, snippet if len(snippet) <= 200 else snippet[:200] + "…")
    if result["attempts"] > 1:
        yield "      attempts: %d" % result["attempts"]


RENDERERS: Dict[str, Callable[[Dict[str, Any]], str]] = {
    "json": render_json,
    "text": render_text,
}
