"""One self-contained HTML page for a report, and one for the run history: inline CSS and SVG,
no script, nothing fetched (a Content-Security-Policy that forbids both), light and dark,
readable on a phone and printable. Imported only when a page is asked for.

Every text from outside (names, messages, facts, bodies, headers, targets) goes through _e:
control characters written as escapes (render.printable), then HTML-escaped with quotes, in
elements, attributes and SVG alike; a body of <script> is text. Long lists are bounded: the
failures first, then passes up to LISTED, the rest counted.
"""

from __future__ import annotations

import html
import math
import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

from checks import history, state
from checks.model import cut
from checks.render import printable, render_json

LISTED = 1000  # results listed, the misses first; the rest counted
ATTENTION = 50  # misses linked from the top
EVIDENCE = 4000  # characters of a result's facts shown
STRIP = 50  # a check's newest runs in its strip
STRIPS = 300  # checks with a strip, the failing first
TIMELINES = 20  # deploy targets drawn, the failed first
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
W = 640  # an SVG's width in its own units; it scales to the page
CHAR_W = 6  # a character of an 11-unit label, wide enough for most (a label that would not fit turns back)
_MISSES = ("error", "fail", "warn")
_TEXT_FACTS = ("body", "stdout", "stderr", "last_match", "banner")
_DATA_FACTS = ("latency_sketch", "samples_ms")  # a perf load's data for `smoke.py summary`: in the JSON report
_THRESHOLD = re.compile(r"\s*([\w.]+)\s*(<=|>=|==|!=|<|>)\s*(-?[0-9.]+(?:[eE][-+]?\d+)?)\s*$")
_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
        "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
CSS = """
:root{--bg:#fff;--fg:#1f2328;--mute:#59636e;--line:#d1d9e0;--card:#f6f8fa;--pass:#1a7f37;--warn:#9a6700;
--fail:#cf222e;--error:#8250df;--skip:#8c959f;--none:#eaeef2;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--mute:#9198a1;--line:#3d444d;--card:#151b23;
--pass:#3fb950;--warn:#d29922;--fail:#f85149;--error:#ab7df8;--skip:#6e7681;--none:#21262d}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:72rem;padding:1rem;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;overflow-wrap:break-word}
h1{font-size:1.3rem;margin:0}h2{font-size:1.1rem;margin:1.6rem 0 .5rem;border-bottom:1px solid var(--line)}
h3{font-size:1rem;margin:1rem 0 .3rem}
a{color:inherit}
.glance{display:flex;flex-wrap:wrap;gap:.6rem 1.2rem;align-items:center;padding:.8rem;border-radius:8px;
background:var(--card);border-left:8px solid var(--skip)}
.glance.pass{border-color:var(--pass)}.glance.warn{border-color:var(--warn)}.glance.fail{border-color:var(--fail)}
.glance.error{border-color:var(--error)}
.verdict{font-size:2rem;font-weight:700}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;margin:0}
dl.facts dt{color:var(--mute)}dl.facts dd{margin:0}
.counts span{margin-right:.8rem;white-space:nowrap}
.badge{display:inline-block;min-width:3.4rem;text-align:center;border-radius:4px;padding:0 .3rem;
font-weight:700;font-size:.8rem;color:#fff;background:var(--skip)}
.badge.pass{background:var(--pass)}.badge.warn{background:var(--warn)}.badge.fail{background:var(--fail)}
.badge.error{background:var(--error)}
.t-pass{color:var(--pass)}.t-warn{color:var(--warn)}.t-fail{color:var(--fail)}.t-error{color:var(--error)}
.mute,.meta{color:var(--mute)}.meta{font-size:.85rem}
.problems{color:var(--fail);margin:.5rem 0}
details.r{border-top:1px solid var(--line);padding:.3rem 0}
details.r summary{cursor:pointer;display:flex;flex-wrap:wrap;gap:0 .6rem;align-items:baseline}
details.r .name{font-weight:600}
.msg{flex-basis:100%;padding-left:4rem}
.ev{padding:.3rem 0 .3rem 4rem}
pre{white-space:pre-wrap;background:var(--card);padding:.5rem;border-radius:6px;margin:.3rem 0;font-size:.8rem;
max-height:40rem;overflow:auto}
.pic{margin:.5rem 0 1.2rem}
svg{width:100%;height:auto;max-width:48rem;display:block}
.two{display:flex;flex-wrap:wrap;gap:0 1rem}.two svg{flex:1 1 22rem;min-width:0}
svg.mini{width:8rem;display:inline-block;vertical-align:middle}
svg text{font:11px system-ui,sans-serif;fill:var(--fg);paint-order:stroke;stroke:var(--bg);stroke-width:3px}
svg .small{font-size:9px;fill:var(--mute)}svg text.in{fill:#fff;stroke:none}
.ax{stroke:var(--line);stroke-width:1}.grid{stroke:var(--line);stroke-dasharray:2 3}
.f-pass{fill:var(--pass)}.f-warn{fill:var(--warn)}.f-fail{fill:var(--fail)}.f-error{fill:var(--error)}
.f-skip{fill:var(--skip)}.f-none{fill:var(--none)}.f-bar{fill:var(--mute);opacity:.55}
.s-pass{stroke:var(--pass)}.s-warn{stroke:var(--warn)}.s-fail{stroke:var(--fail)}.s-error{stroke:var(--error)}
.s-mute{stroke:var(--mute)}.curve{fill:none;stroke:var(--fg);stroke-width:1.5}
.limit{stroke-width:1.5;stroke-dasharray:5 3}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.2rem .5rem .2rem 0;border-bottom:1px solid var(--line);vertical-align:middle}
th{color:var(--mute);font-weight:400}td.n{white-space:nowrap}
td.strip{width:70%;min-width:8rem}
td.strip svg{display:inline-block;vertical-align:middle;width:18rem;max-width:100%;margin-right:.6rem}
@media (max-width:40rem){.msg,.ev{padding-left:0}body{padding:.5rem}}
@media print{:root{--bg:#fff;--fg:#000;--mute:#444;--line:#bbb;--card:#fff;--none:#eee;--pass:#1a7f37;
--warn:#9a6700;--fail:#cf222e;--error:#8250df;--skip:#8c959f}
body{max-width:none;font-size:11pt}*{print-color-adjust:exact;-webkit-print-color-adjust:exact}
details.r,.pic,tr{break-inside:avoid}pre{max-height:none;overflow:visible}a{text-decoration:none}
details::details-content{content-visibility:visible;display:block}}
"""


def _e(value: Any) -> str:
    """Outside text for HTML, in an element or an attribute (SVG's too)."""
    return html.escape(printable(value), quote=True)


def _n(value: float) -> str:
    """A number for SVG coordinates."""
    return "%.1f" % value


def _ms(ms: Any) -> str:
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        return "?"
    if ms < 1000:
        return "%.1f ms" % ms if ms < 100 else "%.0f ms" % ms
    return "%.2f s" % (ms / 1000) if ms < 60000 else "%d min %d s" % (ms // 60000, ms % 60000 // 1000)


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def _document(title: str, body: List[str]) -> str:
    return "".join(['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n',
                    '<meta http-equiv="Content-Security-Policy" content="%s">\n' % CSP,
                    '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
                    '<meta name="referrer" content="no-referrer">\n<title>%s</title>\n' % title,
                    "<style>%s</style></head>\n<body>\n" % CSS] + body + ["</body></html>\n"])


def _svg(height: float, label: str, parts: List[str]) -> str:
    return '<svg viewBox="0 0 %d %s" role="img" aria-label="%s">%s</svg>' % (W, _n(height), _e(label), "".join(parts))


def _text(x: float, y: float, text: Any, anchor: str = "start", cls: str = "") -> str:
    return '<text x="%s" y="%s" text-anchor="%s"%s>%s</text>' % (
        _n(x), _n(y), anchor, ' class="%s"' % cls if cls else "", _e(text))


def _label(x: float, y: float, text: str, gap: float = 4) -> str:
    """text beside the mark at x: after it, or before it where it would run off the picture."""
    if x + gap + len(text) * CHAR_W <= W:
        return _text(x + gap, y, text)
    return _text(x - gap, y, text, "end")


def _on_bar(start: float, end: float, y: float, text: str) -> str:
    """A bar's label inside it, at its end, where it is long enough (the limits marked just past
    the bar's end then cross no text); beside it otherwise."""
    if end - start >= len(text) * CHAR_W + 8:
        return _text(end - 4, y, text, "end", "in")
    return _label(end, y, text)


def _rect(x: float, y: float, w: float, h: float, cls: str, title: str = "") -> str:
    tip = "<title>%s</title>" % _e(title) if title else ""
    return '<rect x="%s" y="%s" width="%s" height="%s" class="%s">%s</rect>' % (_n(x), _n(y), _n(max(w, 1.5)),
                                                                               _n(h), cls, tip)


def _line(x1: float, y1: float, x2: float, y2: float, cls: str) -> str:
    return '<line x1="%s" y1="%s" x2="%s" y2="%s" class="%s"/>' % (_n(x1), _n(y1), _n(x2), _n(y2), cls)


# --- the report --------------------------------------------------------------------------------

def render_html(report: Dict[str, Any], runs: Optional[List[Dict[str, Any]]] = None) -> str:
    """The page of a smoke.report/1 report; with runs (state.history()'s records, oldest first),
    a strip of each check's last runs, this run the newest (added when runs do not have it yet)."""
    results = report.get("results") or []
    status = str(report.get("status", "error"))
    title = "%s · smoke.py %s on %s" % (status.upper(), report.get("command", "?"), report.get("host", "?"))
    body = ["<header>%s</header>\n" % _glance(report), _attention(results), _pictures(report, results)]
    if runs is not None:
        if not any(run.get("time") == report.get("started_at") and run.get("command") == report.get("command")
                   for run in runs[-3:]):
            runs = list(runs) + [state.run_line(report)]
        body.append(_strips(runs, names=[r.get("name") for r in _misses_first(results)]))
    body += ['<section id="results"><h2>Results</h2>\n', _results(results), "</section>\n",
             '<footer class="meta"><p>%s %s · %s</p></footer>\n' % (
                 _e((report.get("tool") or {}).get("name", "smoke.py")),
                 _e((report.get("tool") or {}).get("version", "")), _e(report.get("schema", "")))]
    return _document(_e(title), body)


def _glance(report: Dict[str, Any]) -> str:
    status = str(report.get("status", "error"))
    summary = report.get("summary") or {}
    verdict = status.upper() + (" · INTERRUPTED by %s" % report["interrupted"] if report.get("interrupted") else "")
    rows = [("command", report.get("command")), ("host", report.get("host")), ("started", report.get("started_at")),
            ("duration", _ms(report.get("duration_ms"))), ("exit code", report.get("exit_code"))]
    if report.get("selection"):
        from checks.model import selection_text
        rows.append(("selection", selection_text(report["selection"])))
    counts = " ".join('<span class="t-%s">%s %s</span>' % (name, _e(summary.get(name, 0)), name)
                      for name in ("pass", "warn", "fail", "error", "skip"))
    problems = "".join("<li>%s</li>" % _e(problem) for problem in report.get("problems") or [])
    return ('<div class="glance %s"><div class="verdict">%s</div><h1>smoke.py %s</h1>'
            '<dl class="facts">%s</dl><div class="counts">%s<span>pass rate %s</span></div></div>%s\n') % (
        _e(status), _e(verdict), _e(report.get("command", "")),
        "".join("<dt>%s</dt><dd>%s</dd>" % (name, _e(value)) for name, value in rows), counts,
        _e("%.0f%%" % (100 * summary["pass_rate"]) if _number(summary.get("pass_rate")) is not None else "?"),
        '<ul class="problems">%s</ul>' % problems if problems else "")


def _misses_first(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return sorted(results, key=lambda r: _MISSES.index(r.get("status")) if r.get("status") in _MISSES else 3)


def _attention(results: List[Dict[str, Any]]) -> str:
    misses = [(i, r) for i, r in enumerate(results) if r.get("status") in _MISSES]
    if not misses:
        return ""
    misses.sort(key=lambda pair: _MISSES.index(pair[1]["status"]))
    items = ['<li><span class="badge %s">%s</span> <a href="#r%d">%s</a> <span class="mute">%s</span></li>' % (
        _e(r["status"]), _e(r["status"].upper()), i, _e(r.get("name")), _e(cut(str(r.get("message", "")), 200)))
        for i, r in misses[:ATTENTION]]
    more = "<li>and %d more</li>" % (len(misses) - ATTENTION) if len(misses) > ATTENTION else ""
    return '<section id="attention"><h2>Needs attention</h2><ul>%s%s</ul></section>\n' % ("".join(items), more)


def _results(results: List[Dict[str, Any]]) -> str:
    """Every result, folded; more than LISTED: the misses first, the rest counted."""
    indexed = list(enumerate(results))
    if len(indexed) > LISTED:
        indexed = sorted(indexed, key=lambda pair: (pair[1].get("status") not in ("fail", "error"),
                                                    pair[1].get("status") != "warn"))
    shown, left = indexed[:LISTED], indexed[LISTED:]
    out = [_result(i, r) for i, r in shown]
    if left:
        counts: Dict[str, int] = {}
        for _, r in left:
            counts[str(r.get("status"))] = counts.get(str(r.get("status")), 0) + 1
        out.append('<p class="mute">and %d more not listed: %s (the JSON report has them all)</p>' % (
            len(left), ", ".join("%d %s" % (n, _e(s)) for s, n in sorted(counts.items()))))
    return "".join(out)


def _result(index: int, r: Dict[str, Any]) -> str:
    status = str(r.get("status", "error"))
    meta = " · ".join(_e(part) for part in (r.get("section"), r.get("kind"), _ms(r.get("duration_ms"))) if part)
    if r.get("flaky"):
        meta += " · flaky: passed on attempt %s" % _e(r.get("attempts"))
    message = r.get("message") or ""
    rows = [("target", r.get("target")), ("expect", "; ".join(map(str, r.get("expect") or [])) or None),
            ("severity", r.get("severity") if r.get("severity") != "normal" else None),
            ("attempts", r.get("attempts") if (r.get("attempts") or 0) > 1 else None),
            ("tags", ", ".join(map(str, r.get("tags") or [])) or None)]
    evidence = _evidence(r.get("facts"))
    return ('<details class="r" id="r%d"%s><summary><span class="badge %s">%s</span><span class="name">%s</span>'
            '<span class="meta">%s</span>%s</summary><div class="ev"><dl class="facts">%s</dl>%s</div></details>\n') % (
        index, " open" if status in ("fail", "error") else "", _e(status), _e(status.upper()), _e(r.get("name")),
        meta, '<span class="msg">%s</span>' % _e(cut(message, 500)) if message else "",
        "".join("<dt>%s</dt><dd>%s</dd>" % (k, _e(v)) for k, v in rows if v not in (None, "")), evidence)


def _evidence(facts: Any) -> str:
    """The facts: text ones (a body, a command's output) as text, the rest as JSON; a body that
    was parsed is its JSON."""
    if not isinstance(facts, dict) or not facts:
        return ""
    texts = [key for key in _TEXT_FACTS if isinstance(facts.get(key), str) and facts[key].strip()
             and not (key == "body" and "json" in facts)]
    rest = {key: value for key, value in facts.items() if key not in texts and not (key == "body" and "json" in facts)
            and key not in _DATA_FACTS}
    out = ["<p class=\"meta\">%s</p><pre>%s</pre>" % (key, _e_block(cut(facts[key], EVIDENCE))) for key in texts]
    return "".join(out) + ("<pre>%s</pre>" % _e_block(cut(render_json(rest), EVIDENCE)) if rest else "")


def _e_block(text: str) -> str:
    """Text kept in its lines (a <pre>): each line's control characters escaped."""
    return "\n".join(_e(line) for line in text.split("\n"))


# --- pictures ------------------------------------------------------------------------------------

def _pictures(report: Dict[str, Any], results: List[Dict[str, Any]]) -> str:
    metrics = report.get("metrics") if isinstance(report.get("metrics"), dict) else {}
    parts = [_perf(r) for r in results if r.get("kind") == "perf" and isinstance(r.get("facts"), dict)
             and r["facts"].get("count")][:TIMELINES]
    parts.append(_deploy(results, metrics.get("deploy")))
    parts.append(_heartbeat(results, metrics.get("heartbeat")))
    parts.append(_rollback(results, metrics.get("rollback")))
    parts = [part for part in parts if part]
    return '<section id="pictures"><h2>Pictures</h2>%s</section>\n' % "".join(parts) if parts else ""


def _thresholds(r: Dict[str, Any]) -> List[Tuple[str, str, str, float, Any, Optional[bool]]]:
    """(condition, metric, op, value, observed, held or None when unknown) of each numeric threshold."""
    observed = r["facts"].get("observed") if isinstance(r["facts"].get("observed"), dict) else {}
    out = []
    for condition in r.get("expect") or []:
        found = _THRESHOLD.match(str(condition))
        if found:
            seen = observed.get(condition, r["facts"].get(found.group(1)))
            held = _OPS[found.group(2)](seen, float(found.group(3))) if _number(seen) is not None else None
            out.append((str(condition), found.group(1), found.group(2), float(found.group(3)), seen, held))
    return out


def _perf(r: Dict[str, Any]) -> str:
    """A perf target: its numbers, a latency histogram and a percentile curve, each with the
    latency thresholds marked, and errors by kind."""
    facts = r["facts"]
    limits = _thresholds(r)
    numbers = "%s req/s · %s requests · %s errors (%.2f%%) · %s s" % (
        _e(facts.get("rps")), _e(facts.get("count")), _e(facts.get("errors")),
        100 * (_number(facts.get("error_rate")) or 0), _e(facts.get("duration_s")))
    kinds = facts.get("errors_by_kind") if isinstance(facts.get("errors_by_kind"), dict) else {}
    errors = ("<p>errors by kind: %s</p>" % ", ".join("<b>%s</b> ×%s" % (_e(k), _e(v)) for k, v in sorted(
        kinds.items(), key=lambda kv: -(_number(kv[1]) or 0)))) if kinds else ""
    rows = "".join('<tr><td>%s</td><td>%s</td><td class="t-%s">%s</td></tr>' % (
        _e(condition), _e(seen), "mute" if held is None else "pass" if held else "fail",
        "?" if held is None else "held" if held else "missed") for condition, _, _, _, seen, held in limits)
    latency = [(metric, op, value, held) for _, metric, op, value, _, held in limits if metric.endswith("_ms")]
    return ('<div class="pic"><h3><span class="badge %s">%s</span> perf %s</h3><p class="meta">%s</p><p>%s</p>'
            '%s%s%s</div>') % (
        _e(r.get("status")), _e(str(r.get("status", "")).upper()), _e(r.get("name")), _e(r.get("target", "")),
        numbers, errors, '<div class="two">%s%s</div>' % (_histogram(facts, latency), _curve(facts, latency)),
        "<table><tr><th>threshold</th><th>observed</th><th></th></tr>%s</table>" % rows if rows else "")


def _histogram(facts: Dict[str, Any], latency: List[Tuple[str, str, float, Optional[bool]]]) -> str:
    buckets = [b for b in facts.get("histogram") or [] if isinstance(b, list) and len(b) == 2
               and _number(b[0]) is not None and _number(b[1]) is not None]
    if not buckets:
        return ""
    low = max(min(_number(facts.get("min_ms")) or buckets[0][0], buckets[0][0]), 0.001)
    high = max(buckets[-1][0], low * 1.0001)
    most = max(b[1] for b in buckets) or 1
    left, width, height = 56, W - 90, 130

    def x(ms: float) -> float:
        ms = min(max(ms, low), high)
        return left + width * (math.log(ms) - math.log(low)) / (math.log(high) - math.log(low))
    marks = [("%s %s %s%s" % (metric, op, _number_text(value), "" if low <= value <= high else " (off the axis)"),
              value, held) for metric, op, value, held in latency]
    rows = _rows([(x(value), len(text)) for text, value, _ in marks]) if marks else []
    top = 24 + 12 * max(rows or [0])  # a row of labels above the bars for each that would cover another
    parts = [_line(left, top + height, left + width, top + height, "ax"), _text(left - 4, top + 8, most, "end"),
             _text(left - 4, top + height, 0, "end"), _text(left, top + height + 14, _ms(low), "middle"),
             _text(left + width, top + height + 14, _ms(high), "middle"),
             _text(left + width / 2, top + height + 28, "latency (log scale): requests per bucket", "middle", "small")]
    lower = low
    for bound, count in buckets:
        parts.append(_rect(x(lower) + 0.5, top + height * (1 - count / most), x(bound) - x(lower) - 1,
                           height * count / most, "f-bar", "%s to %s: %d" % (_ms(lower), _ms(bound), count)))
        lower = bound
    for (text, value, held), row in zip(marks, rows):
        cls = "s-mute" if held is None else "s-pass" if held else "s-fail"
        half = len(text) * CHAR_W / 2
        parts += [_line(x(value), top - 4 - 12 * row, x(value), top + height, "limit " + cls),
                  _text(min(max(x(value), half), W - half), top - 8 - 12 * row, text, "middle")]
    return _svg(top + height + 34, "latency histogram", parts)


def _rows(labels: List[Tuple[float, int]]) -> List[int]:
    """The row of each label centred at x and so many characters long: the first row where it
    covers no label before it, so labels of thresholds close together stack, never overlap."""
    taken: List[List[Tuple[float, float]]] = []
    out = []
    for centre, length in labels:
        span = (centre - length * CHAR_W / 2 - 4, centre + length * CHAR_W / 2 + 4)
        row = next((i for i, spans in enumerate(taken) if all(span[1] <= a or b <= span[0] for a, b in spans)),
                   len(taken))
        if row == len(taken):
            taken.append([])
        taken[row].append(span)
        out.append(row)
    return out


def _number_text(value: float) -> str:
    return ("%f" % value).rstrip("0").rstrip(".")


_POINTS = (("min_ms", 0.0), ("p50_ms", 50.0), ("p90_ms", 90.0), ("p95_ms", 95.0), ("p99_ms", 99.0),
           ("p999_ms", 99.9))


def _curve(facts: Dict[str, Any], latency: List[Tuple[str, str, float, Optional[bool]]]) -> str:
    """Latency by percentile, the tail stretched (each step of the axis is a nine: 90, 99, 99.9)."""
    points = [(p, _number(facts.get(key))) for key, p in _POINTS if _number(facts.get(key)) is not None]
    if len(points) < 2 or _number(facts.get("max_ms")) is None:
        return ""
    nines = 3 if facts.get("p999_ms") is not None else 2 if facts.get("p99_ms") is not None else 1
    left, top, width, height = 56, 14, W - 90, 130
    ceiling = max([facts["max_ms"]] + [value for metric, _, value, _ in latency]) * 1.05 or 1

    end = nines + 0.35  # where max is drawn, past the last nine

    def x(p: float) -> float:
        return left + width * min(math.log10(100 / (100 - p)) if p < 100 else end, end) / end

    def y(ms: float) -> float:
        return top + height * (1 - ms / ceiling)
    points.append((100.0, facts["max_ms"]))
    parts = [_line(left, top + height, left + width, top + height, "ax"), _line(left, top, left, top + height, "ax"),
             _text(left - 4, top + 8, _ms(ceiling), "end"), _text(left - 4, top + height, "0", "end")]
    for label, p in (("p0", 0), ("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))[:nines + 2] + (("max", 100),):
        parts += [_line(x(p), top, x(p), top + height, "grid"), _text(x(p), top + height + 13, label, "middle")]
    parts.append('<polyline class="curve" points="%s"/>' % " ".join("%s,%s" % (_n(x(p)), _n(y(v))) for p, v in points))
    parts += ['<circle cx="%s" cy="%s" r="2.5" class="f-bar"><title>%s</title></circle>' % (
        _n(x(p)), _n(y(v)), _e("p%g: %s" % (p, _ms(v)) if p < 100 else "max: " + _ms(v))) for p, v in points]
    said = top + height + 9  # labels go up the right edge 12 units apart at least, each on its line or above the last
    for metric, op, value, held in sorted(latency, key=lambda limit: limit[2]):
        cls = "s-mute" if held is None else "s-pass" if held else "s-fail"
        said = min(said - 12, y(value) - 3)
        parts += [_line(left, y(value), left + width, y(value), "limit " + cls),
                  _text(left + width, said, "%s %s %s" % (metric, op, _number_text(value)), "end")]
    parts.append(_text(left + width / 2, top + height + 27, "latency by percentile (the tail stretched)", "middle",
                       "small"))
    return _svg(top + height + 32, "latency by percentile", parts)


def _timeline(rows: List[Tuple[str, Any, str]], scale_ms: float, label: str) -> str:
    """Steps run one after another (name, duration_ms, status): a bar each from where the last
    ended, the failed ones marked, on a time axis."""
    left, row_h = 170, 18
    width = W - left - 90
    parts, start = [], 0.0
    for i, (name, ms, status) in enumerate(rows):
        ms = _number(ms) or 0.0
        y = 4 + i * row_h
        x = left + width * start / scale_ms
        parts.append(_text(left - 6, y + 11, cut(str(name), 26), "end"))
        if status == "skip":
            parts.append(_text(x + 2, y + 11, "skipped", cls="small"))
            continue
        mark = " \u2715 %s" % status if status in ("fail", "error") else ""
        parts += [_rect(x, y + 2, width * ms / scale_ms, row_h - 6, "f-" + status, "%s: %s, %s" % (
                      name, status, _ms(ms))), _text(x + max(width * ms / scale_ms, 1.5) + 4, y + 11, _ms(ms) + mark)]
        start += ms
    axis = 6 + len(rows) * row_h
    parts.append(_line(left, axis, left + width, axis, "ax"))
    for tick in _ticks(scale_ms / 1000):
        x = left + width * tick * 1000 / scale_ms
        parts += [_line(x, axis, x, axis + 4, "ax"), _text(x, axis + 14, "%gs" % tick, "middle", "small")]
    return _svg(axis + 18, label, parts)


def _deploy(results: List[Dict[str, Any]], metrics: Any) -> str:
    """A timeline per deploy target: its phases in order with their durations, the failed marked."""
    targets = metrics.get("targets") if isinstance(metrics, dict) and isinstance(metrics.get("targets"), dict) else {}
    steps = [r for r in results if r.get("section") == "deploy"]
    if not steps:
        return ""
    phases: Dict[str, List[Tuple[str, Any, str]]] = {}
    for r in steps:
        name = str(r.get("name", ""))
        target, slash, phase = name.partition("/")  # a matrix's results are TARGET/PHASE
        if not slash or (targets and target not in targets):
            target, phase = next(iter(targets)) if len(targets) == 1 else "deploy", name
        phases.setdefault(target, []).append((phase, r.get("duration_ms"), str(r.get("status"))))
    totals = {t: sum(_number(ms) or 0 for _, ms, _ in rows) for t, rows in phases.items()}
    scale = max(list(totals.values()) + [1.0])
    order = sorted(phases, key=lambda t: all(s not in ("fail", "error") for _, _, s in phases[t]))
    out = []
    for target in order[:TIMELINES]:
        status = (targets.get(target) or {}).get("status") or (
            "fail" if any(s in ("fail", "error") for _, _, s in phases[target]) else "pass")
        out.append('<h3><span class="badge %s">%s</span> deploy %s <span class="meta">%s</span></h3>%s' % (
            _e(status), _e(str(status).upper()), _e(target), _ms(totals[target]),
            _timeline(phases[target], scale, "deploy timeline of " + target)))
    if len(order) > TIMELINES:
        out.append('<p class="mute">and %d more targets</p>' % (len(order) - TIMELINES))
    return '<div class="pic">%s</div>' % "".join(out)


def _heartbeat(results: List[Dict[str, Any]], metrics: Any) -> str:
    """From the kill: the detection (and the event's own time, each detector's), the grace that
    followed, the bound the timings promise and the deadline, on one time axis."""
    if not isinstance(metrics, dict):
        return ""
    steps = {r.get("name"): r for r in results if r.get("section") == "heartbeat"}
    if "kill" not in steps or steps["kill"].get("status") != "pass":
        return ""
    detect, grace = steps.get("detect") or {}, steps.get("grace") or {}
    detection, deadline = _number(metrics.get("detection_s")), _number(metrics.get("deadline_s"))
    bound, stamped = _number(metrics.get("expected_bound_s")), _number(metrics.get("event_detection_s"))
    waited = (_number(detect.get("duration_ms")) or 0) / 1000
    graced = (_number(grace.get("duration_ms")) or 0) / 1000 if grace.get("status") not in (None, "skip") else 0
    scale = (max([v for v in (detection, deadline, bound, stamped, waited) if v] + [0.1]) + graced) * 1.08
    left, width = 90, W - 180

    def x(seconds: float) -> float:
        return left + width * max(0.0, seconds) / scale
    parts = [_line(left, 68, left + width, 68, "ax"), _text(left - 6, 42, "detection", "end"),
             _text(left - 6, 60, "grace", "end")]
    for tick in _ticks(scale):
        parts += [_line(x(tick), 68, x(tick), 72, "ax"), _text(x(tick), 82, "%gs" % tick, "middle", "small")]
    parts.append(_text(left - 6, 96, "\u2191 kill: %s" % (steps["kill"].get("target") or "")))
    if detection is not None:
        held = deadline is None or detection <= deadline
        parts += [_rect(x(0), 32, x(detection) - x(0), 12, "f-pass" if held else "f-fail",
                        "detected %.3fs after the kill" % detection),
                  _on_bar(x(0), x(detection), 41.5, "detected %.3fs" % detection)]
        if graced:
            parts += [_rect(x(detection), 52, x(detection + graced) - x(detection), 10,
                            "f-" + str(grace.get("status")), "grace: %s" % _ms(graced * 1000)),
                      _label(x(detection + graced), 61, "%s %s" % (grace.get("status"), _ms(graced * 1000)))]
    else:
        parts += [_rect(x(0), 32, x(waited) - x(0), 12, "f-fail", "no failure event"),
                  _label(x(waited), 42, "no failure event in %.2fs" % waited)]
    detectors = metrics.get("detectors") if isinstance(metrics.get("detectors"), dict) else {}
    parts += ['<circle cx="%s" cy="38" r="2.5" class="f-bar"><title>%s</title></circle>' % (_n(x(s)), _e(
        "%s: %.3fs" % (name, s))) for name, s in detectors.items() if _number(s) is not None]
    for value, label, cls, y in ((bound, "bound", "s-warn", 10), (deadline, "deadline", "s-fail", 22)):
        if value is not None:
            parts += [_line(x(value), y + 2, x(value), 68, "limit " + cls),
                      _label(x(value), y, "%s %gs" % (label, value), 3)]
    facts = " · ".join(_e(said % metrics[key]) for key, said in (
        ("event_detection_s", "the failure event stamped %ss after the kill"),
        ("steady_s", "steady heartbeats after %ss"), ("quorum", "quorum %s")) if metrics.get(key) is not None)
    return ('<div class="pic"><h3><span class="badge %s">%s</span> heartbeat: from the kill</h3>%s'
            '<p class="meta">%s</p></div>') % (_e(detect.get("status", "error")),
                                              _e(str(detect.get("status", "error")).upper()),
                                              _svg(100, "heartbeat timeline", parts), facts)



def _ticks(span: float) -> List[float]:
    step = 10 ** math.floor(math.log10(span / 4)) if span > 0 else 1
    step *= 5 if span / step > 20 else 2 if span / step > 8 else 1
    return [round(i * step, 6) for i in range(int(span / step) + 1)]


def _rollback(results: List[Dict[str, Any]], metrics: Any) -> str:
    """Each trigger's observed value against its threshold, the steps, and the verification."""
    if not isinstance(metrics, dict) or not isinstance(metrics.get("triggers"), list):
        return ""
    rows = []
    for trigger in [t for t in metrics["triggers"] if isinstance(t, dict)][:100]:
        said = "fired" if trigger.get("fired") else "no data" if trigger.get("no_data") else "held"
        rows.append('<tr><td>%s</td><td>%s</td><td>%s %s</td><td class="t-%s">%s</td><td>%s</td></tr>' % (
            _e(trigger.get("condition")), "\u2014" if trigger.get("observed") is None else _e(trigger.get("observed")),
            _e(trigger.get("op", "")),
            _e(trigger.get("threshold")), "fail" if trigger.get("fired") else "mute" if trigger.get("no_data")
            else "pass", said, _against(trigger)))
    verify = metrics.get("verify") if isinstance(metrics.get("verify"), dict) else None
    steps = [(r.get("name"), r.get("duration_ms"), str(r.get("status"))) for r in results if r.get("section") ==
             "rollback" and r.get("kind") not in ("trigger", "incident", "verify", "cooldown", "report")]
    out = ['<div class="pic"><h3>rollback: %s</h3>' % _e(metrics.get("outcome") or (
        "dry run: needed" if metrics.get("needed") else "not needed")),
        '<table><tr><th>trigger</th><th>observed</th><th>threshold</th><th></th><th></th></tr>%s</table>'
        % "".join(rows) if rows else ""]
    if steps:
        out += ["<p>steps</p>", _timeline(steps, max(sum(_number(ms) or 0 for _, ms, _ in steps), 1.0),
                                          "rollback steps")]
    if verify:
        out.append('<p>verify <span class="badge %s">%s</span> %s after %s attempts in %s s%s</p>' % (
            _e(verify.get("status")), _e(str(verify.get("status", "")).upper()),
            _e(", ".join(map(str, verify.get("sections") or []))), _e(verify.get("attempts")),
            _e(verify.get("duration_s")), "; still failing: " + _e(", ".join(map(str, verify["failing"])))
            if verify.get("failing") else ""))
    return "".join(out) + "</div>"


def _against(trigger: Dict[str, Any]) -> str:
    """A small bar of the observed value with the threshold marked, when both are numbers."""
    seen, limit = _number(trigger.get("observed")), _number(_float(trigger.get("threshold")))
    if seen is None or limit is None:
        return ""
    top = max(abs(seen), abs(limit)) * 1.2 or 1.0
    cls = "f-fail" if trigger.get("fired") else "f-pass"
    return '<svg class="mini" viewBox="0 0 120 14" role="img" aria-label="observed against threshold">%s%s</svg>' % (
        _rect(0, 2, 120, 10, "f-none") + _rect(0, 2, 120 * abs(seen) / top, 10, cls, "observed %g" % seen),
        _line(120 * abs(limit) / top, 0, 120 * abs(limit) / top, 14, "limit s-fail"))



def _float(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --- the history -----------------------------------------------------------------------------------

def _strips(runs: List[Dict[str, Any]], names: Optional[List[Any]] = None, ordered: bool = True,
            tags: Any = (), command: Optional[str] = None) -> str:
    """A row per check (those named, in that order when ordered, else all, the failing first): its
    newest runs as a strip (newest last, each with its time), its streak and pass rate."""
    wanted = list(dict.fromkeys(n for n in names if isinstance(n, str))) if names is not None else None
    rows = history.summarise(runs, check=wanted[:STRIPS] if wanted is not None else None, tags=tags,
                             command=command, recent=STRIP)
    if wanted is not None and ordered:
        place = {name: i for i, name in enumerate(wanted)}
        rows.sort(key=lambda row: place[row["name"]])
    left = (len(wanted) if wanted is not None else len(rows)) - STRIPS
    out = ['<section id="history"><h2>History</h2><p class="meta">%d run%s kept (interrupted ones passed over)</p>'
           '<table><tr><th>check</th><th>its last %d runs, newest last</th><th>pass rate</th></tr>\n'
           % (len(runs), "" if len(runs) == 1 else "s", STRIP)]
    for row in rows[:STRIPS]:
        cells = [_rect(i * 6, 0, 4.5, 16, "f-" + status, "%s %s" % (_when(when), status))
                 for i, (status, when) in enumerate(zip(row["recent"], row["recent_times"]))]
        streak = "%s %d run%s, since %s" % ("failing" if row["last"] in history.FAILING else "passing",
                                           row["streak"], "" if row["streak"] == 1 else "s", _when(row["since"]))
        out.append('<tr><td><span class="badge %s">%s</span> %s</td><td class="strip"><svg viewBox="0 0 %d 16" '
                   'preserveAspectRatio="xMinYMid meet" role="img" aria-label="recent runs">%s</svg>'
                   '<span class="meta">%s</span></td><td class="n">%.0f%% of %d%s</td></tr>\n' % (
                       _e(row["last"]), _e(row["last"].upper()), _e(row["name"]), STRIP * 6, "".join(cells),
                       _e(streak), 100 * row["pass_rate"], row["runs"],
                       '<br><span class="meta">%d flaky</span>' % row["flaky"] if row["flaky"] else ""))
    if left > 0:
        out.append('<tr><td colspan="3" class="mute">and %d more checks</td></tr>' % left)
    return "".join(out) + "</table></section>\n"


def _when(stamp: Any) -> str:
    """2026-12-07T03:26:16.537Z as 2026-12-07 03:26:16Z: the second is enough to a reader."""
    return re.sub(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?Z$", r"\1 \2Z", str(stamp or "?"))


def render_history(runs: List[Dict[str, Any]], where: str, check: Optional[List[str]] = None, tags: Any = (),
                   command: Optional[str] = None) -> str:
    """The history's page alone (smoke.py history --html): a strip per check, the failing first,
    narrowed as summarise() narrows."""
    kept = [run for run in runs if history.chosen(run, tags, command)]
    span = "%s to %s" % (kept[0].get("time"), kept[-1].get("time")) if kept else "no runs"
    body = ['<header><div class="glance"><h1>smoke.py history</h1><dl class="facts"><dt>from</dt><dd>%s</dd>'
            '<dt>runs</dt><dd>%d (%s)</dd></dl></div></header>\n' % (_e(where), len(kept), _e(span)),
            _strips(kept, names=check, ordered=False, tags=tags, command=command)]
    return _document("smoke.py history", body)


# --- a fleet -----------------------------------------------------------------------------------------

HOSTS_DRAWN = 200  # hosts in the grid of checks, the worst first; the rest counted


def render_fleet(doc: Dict[str, Any]) -> str:
    """The page of `smoke.py summary` (doc: its smoke.summary/1 view): the fleet at a glance, the
    hosts worst first, a grid of checks by hosts (the checks that miss on the most hosts first),
    each perf load merged over hosts drawn as a run's perf target is."""
    status, hosts, counts = str(doc.get("status", "error")), doc.get("hosts") or [], doc.get("counts") or {}
    rows = [("hosts", len(hosts)), ("from", " ".join(map(str, doc.get("paths") or []))),
            ("reports", doc.get("reports")), ("exit code", doc.get("exit_code"))]
    glance = ('<div class="glance %s"><div class="verdict">%s</div><h1>smoke.py summary</h1><dl class="facts">%s</dl>'
              '<div class="counts">%s</div></div>%s\n') % (
        _e(status), _e(status.upper()), "".join("<dt>%s</dt><dd>%s</dd>" % (k, _e(v)) for k, v in rows),
        " ".join('<span class="t-%s">%s %s</span>' % (name, _e(counts.get(name, 0)), name)
                 for name in ("pass", "warn", "fail", "error")),
        '<ul class="problems">%s</ul>' % "".join("<li>%s</li>" % _e(w) for w in doc["warnings"])
        if doc.get("warnings") else "")
    body = ["<header>%s</header>\n" % glance, _fleet_hosts(hosts), _fleet_grid(doc.get("checks") or [], hosts)]
    loads = [_perf({"status": m["status"], "name": "%s, merged over %d hosts" % (m["target"], len(m["hosts"])),
                    "target": ", ".join(m["hosts"]), "expect": m["expect"], "facts": m["facts"]})
             + _fleet_load(m) for m in doc.get("loads") or []]
    if loads:
        body.append('<section id="loads"><h2>Perf loads over hosts</h2>%s</section>\n' % "".join(loads))
    return _document(_e("%s · smoke.py summary of %d hosts" % (status.upper(), len(hosts))), body)


def _fleet_hosts(hosts: List[Dict[str, Any]]) -> str:
    out = ['<section id="hosts"><h2>Hosts</h2><table><tr><th>host</th><th>report</th><th>pass</th><th>warn</th>'
           '<th>fail</th><th>error</th><th>misses</th></tr>\n']
    for row in hosts[:LISTED]:
        for report in row["reports"]:
            out.append('<tr><td class="n"><span class="badge %s">%s</span> %s</td><td class="meta">%s %s<br>%s</td>%s'
                       '<td>%s</td></tr>\n' % (
                           _e(report["status"]), _e(report["status"].upper()), _e(row["host"]),
                           _e(report["command"] or ""), _e(_when(report["started_at"]) if report["started_at"] else ""),
                           _e(report["file"]), "".join('<td class="n">%s</td>' % _e(row["counts"].get(name, 0))
                                                       for name in ("pass", "warn", "fail", "error")),
                           _e(report["problem"]) if report["problem"] else _e(cut(", ".join(
                               row["failing"] + row["warning"]), 500))))
    if len(hosts) > LISTED:
        out.append('<tr><td colspan="7" class="mute">and %d more hosts</td></tr>' % (len(hosts) - LISTED))
    return "".join(out) + "</table></section>\n"


def _fleet_grid(checks: List[Dict[str, Any]], hosts: List[Dict[str, Any]]) -> str:
    """A row per check (the first STRIPS), a cell per host (the first HOSTS_DRAWN, in the hosts' order)."""
    if not checks:
        return ""
    drawn = [row["host"] for row in hosts[:HOSTS_DRAWN]]
    out = ['<section id="checks"><h2>Checks by host</h2><p class="meta">a cell per host, in the order above%s; '
           'grey: the host has no such check</p><table><tr><th>check</th><th>hosts</th><th>misses on</th>'
           '<th>first miss</th></tr>\n'
           % ("; the first %d of %d" % (HOSTS_DRAWN, len(hosts)) if len(hosts) > HOSTS_DRAWN else "")]
    for row in checks[:STRIPS]:
        cells = [_rect(i * 6, 0, 4.5, 16, "f-" + (status or "none"), "%s: %s" % (host, status or "no such check"))
                 for i, (host, status) in enumerate(zip(drawn, row["statuses"]))]
        missed = row["fail"] + row["error"] + row["warn"]
        out.append('<tr><td>%s <span class="meta">%s</span></td><td class="strip"><svg viewBox="0 0 %d 16" '
                   'preserveAspectRatio="xMinYMid meet" role="img" aria-label="by host">%s</svg></td>'
                   '<td>%s</td><td>%s</td></tr>\n' % (
                       _e(row["name"]), _e(row["section"]), max(30, len(drawn)) * 6, "".join(cells),
                       _e(cut(", ".join(missed), 300)) if missed else '<span class="mute">none</span>',
                       _e(cut(row.get("message") or "", 200))))
    if len(checks) > STRIPS:
        out.append('<tr><td colspan="4" class="mute">and %d more checks</td></tr>' % (len(checks) - STRIPS))
    return "".join(out) + "</table></section>\n"


def _fleet_load(merged: Dict[str, Any]) -> str:
    """How a merged load was told: the percentiles' source, the hosts left out, each host's share."""
    facts = merged["facts"]
    source = {"samples": "exact, from every sample the hosts kept", "sketch": "from the hosts' latency sketches, "
              "within %g%%" % (100 * (_number(facts.get("accuracy")) or 0))}.get(facts.get("percentiles_from"),
                                                                              "not merged")
    notes = ["percentiles: " + source, "req/s: the sum of the hosts' (under way together for %s s)"
             % facts.get("overlap_s", "?")] + ["not judged: " + line for line in merged.get("unjudged") or []] + [
        "left out: %s: %s" % (out["host"], out["why"]) for out in merged.get("left_out") or []]
    rows = "".join('<tr><td><span class="badge %s">%s</span> %s</td>%s</tr>' % (
        _e(row["status"]), _e(str(row["status"]).upper()), _e(row["host"]),
        "".join('<td class="n">%s</td>' % _e(row.get(key)) for key in ("rps", "count", "errors", "p50_ms", "p95_ms",
                                                                        "p99_ms"))) for row in merged["per_host"])
    return ('<ul class="meta">%s</ul><table><tr><th>host</th><th>req/s</th><th>requests</th><th>errors</th>'
            '<th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>%s</table>\n') % (
        "".join("<li>%s</li>" % _e(note) for note in notes), rows)
