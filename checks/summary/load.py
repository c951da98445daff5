"""A perf load spread over several hosts, merged into one result and judged again.

Each host ran `smoke.py perf` against the same target at the same time (Ansible starts the task
on every host at once); each report holds that host's share. The merged load is:

- the hosts: those whose runs were under way together, at the moment most of them were (their
  report's started_at to started_at + duration_ms); a host whose run was not is left out and
  said (a report of another day, fetched with these);
- requests, errors and errors by kind: the sums; error_rate: errors over requests;
- rps: the sum of each host's own req/s, the rate the target saw while they all ran (overlap_s
  says for how long they did);
- min, max and mean: of every sample; the percentiles (nearest rank over every request of every
  host) exact when every report kept its samples (perf --keep-samples), else from the latency
  sketches the reports carry, added bucket by bucket: within their accuracy (0.5%) of the exact;
- judged by the hosts' own thresholds and those given to summary (--threshold), as perf judges.

Every number a report gives is checked before it is added (_unmergeable): finite, whole where a
count is due, within what a load can be (MAX_COUNT requests, MAX_MS a latency, a sketch's
accuracy from MIN_ACCURACY to 0.5 and its buckets' indexes within those latencies). A host whose
numbers are not is named, and the merged load is an error: a report is only as good as the file.
"""

from __future__ import annotations

import array
import collections
import math

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

MAX_SAMPLES = 20000000  # kept samples merged exactly, at most (160 MB); past that, the sketches
MAX_COUNT = 10 ** 12  # requests of one host's load, at most (ten million a second for a day)
MAX_MS = 1e9  # a latency, or a run, in ms, at most (eleven days)
MAX_RPS = 1e9
MIN_ACCURACY = 1e-6  # of a latency sketch: finer, its buckets' bounds are one float
_LIMITS = {"count": MAX_COUNT, "ok": MAX_COUNT, "errors": MAX_COUNT, "rps": MAX_RPS, "duration_s": MAX_MS / 1000,
           "min_ms": MAX_MS, "mean_ms": MAX_MS, "max_ms": MAX_MS}
_COPIED = ("count", "ok", "errors", "rps", "duration_s", "min_ms", "mean_ms", "max_ms", "p50_ms", "p95_ms", "p99_ms",
           "errors_by_kind", "trouble",
           "error", "deadline_exceeded", "aborted", "latency_sketch")


def slim(result: Dict[str, Any]) -> Dict[str, Any]:
    """What the summary keeps of a result: no facts, but a perf load's numbers, its kept samples
    as an array (8 bytes a sample, not a float object's 24 and a list's 8)."""
    out = {key: result.get(key) for key in ("name", "section", "kind", "status", "message", "expect")}
    facts = result.get("facts")
    if result.get("kind") == "perf" and isinstance(facts, dict):
        out["facts"] = {key: facts[key] for key in _COPIED if key in facts}
        kept = facts.get("samples_ms")
        if kept is not None:  # anything but latencies is kept as a word, and said when merged
            out["facts"]["samples_ms"] = array.array("d", kept) if isinstance(kept, list) and all(
                _number(value, MAX_MS) is not None for value in kept) else "not latencies"
    return out


def _number(value: Any, most: float = math.inf, least: float = 0.0) -> Optional[float]:
    """value as a float when it is a number (not a bool) from least to most; None otherwise
    (text, NaN, 1e308 where a latency is due, an int past any float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and least <= number <= most else None


def _epoch(stamp: Any) -> Optional[float]:
    """2026-12-07T04:02:32.018Z in seconds since the epoch; None when it is not one."""
    import calendar
    import re
    import time

    if not isinstance(stamp, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", stamp):
        return None
    try:
        return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + stamp[19:-1])
    except ValueError:  # a 13th month
        return None


def _unmergeable(facts: Dict[str, Any], report: Any) -> str:
    """Why a host's load cannot be merged: a number no load gives (text, NaN, negative, 1e308
    requests, half a request, an accuracy of 1, a sketch's bucket past any latency), or a time
    that is none; "" when each is one. Checked before anything is added, so no sum overflows."""
    from checks.model import cut

    for key, most in _LIMITS.items():
        whole = key in ("count", "ok", "errors")
        value = _number(facts[key], most) if key in facts else 0.0
        if value is None or whole and not value.is_integer():
            return "%s is %s, not %s from 0 to %g" % (key, cut(repr(facts[key]), 40),
                                                      "a whole number" if whole else "a number", most)
    kinds = facts.get("errors_by_kind", {})
    if not isinstance(kinds, dict) or not all(_number(n, MAX_COUNT) is not None and float(n).is_integer()
                                              for n in kinds.values()):
        return "errors_by_kind is %s, not counts of errors by kind" % cut(repr(kinds), 60)
    if "samples_ms" in facts and not isinstance(facts["samples_ms"], array.array):
        return "samples_ms holds what is not a latency (a number of ms from 0 to %g)" % MAX_MS
    sketch = facts.get("latency_sketch")
    if isinstance(sketch, dict) and "accuracy" in sketch:
        accuracy = _number(sketch["accuracy"], 0.5, MIN_ACCURACY)
        if accuracy is None:
            return "latency_sketch's accuracy is %s, not one from %g to 0.5" % (cut(repr(sketch["accuracy"]), 40),
                                                                                MIN_ACCURACY)
        low, high = _indexes(accuracy)
        for bucket in sketch.get("buckets") if isinstance(sketch.get("buckets"), list) else ():
            if isinstance(bucket, list) and bucket and type(bucket[0]) is int and not low <= bucket[0] <= high:
                return "latency_sketch has a bucket of index %s, past any latency (from %d to %d at accuracy %g)" % (
                    cut(str(bucket[0]), 40), low, high, accuracy)
    if _epoch(report.started_at) is None:
        return "its report's started_at is %s, not a time" % cut(repr(report.started_at), 40)
    if _number(report.duration_ms, MAX_MS) is None:
        return "its report's duration_ms is %s, not a number from 0 to %g" % (cut(repr(report.duration_ms), 40),
                                                                                MAX_MS)
    return ""


def _indexes(accuracy: float) -> Tuple[int, int]:
    """The indexes a sketch of this accuracy has buckets of: latencies of 1e-6 ms to MAX_MS."""
    from checks.probes.samples import sketch_gamma

    log_gamma = math.log(sketch_gamma(accuracy))
    return math.floor(math.log(1e-6) / log_gamma) - 1, math.ceil(math.log(MAX_MS) / log_gamma) + 1


def loads(reports: List[Any], thresholds: Tuple[Any, ...] = ()) -> List[Dict[str, Any]]:
    """A merged load per perf target that two or more hosts ran (their reports' perf section), or
    any host when thresholds are given, in the order the targets first come."""
    groups: Dict[str, List[Tuple[Any, Dict[str, Any]]]] = collections.OrderedDict()
    for report in reports:
        for result in report.results:
            if result.get("kind") == "perf" and result.get("section") == "perf":
                groups.setdefault(result["name"], []).append((report, result))
    return [merge(name, members, thresholds) for name, members in groups.items() if len(members) > 1 or thresholds]


def _together(spans: List[Tuple[int, float, float]]) -> List[int]:
    """The members whose runs were under way at the moment most were (the earliest such): at a
    run's start, those begun by then less those ended before it (n log n: ten thousand hosts)."""
    import bisect

    starts, ends = sorted(start for _, start, _ in spans), sorted(end for _, _, end in spans)
    moment = max(starts, key=lambda t: (bisect.bisect_right(starts, t) - bisect.bisect_left(ends, t), -t))
    return [i for i, start, end in spans if start <= moment <= end]


def merge(name: str, members: List[Tuple[Any, Dict[str, Any]]], thresholds: Tuple[Any, ...] = ()) -> Dict[str, Any]:
    """One target's load on several hosts as one result (the module's docstring says how)."""
    left_out, spans, broken = [], [], []
    for i, (report, result) in enumerate(members):
        facts = result.get("facts") or {}
        numbers = result["status"] != "skip" and all(facts.get(key) is not None for key in ("count", "ok", "errors",
                                                                                            "rps"))
        dated = report.started_at is not None and report.duration_ms is not None
        why = _unmergeable(facts, report) if numbers and dated else ""
        if not numbers:
            left_out.append({"host": report.host, "why": "its load has no numbers (%s: %s)" % (
                result["status"], result.get("message") or "no facts")})
        elif not dated:
            left_out.append({"host": report.host, "why": "its report does not say when it ran"})
        elif why:
            left_out.append({"host": report.host, "why": "its load cannot be merged: " + why})
            broken.append("%s's load cannot be merged: %s" % (report.host, why))
        else:
            start = _epoch(report.started_at)
            spans.append((i, start, start + report.duration_ms / 1000.0))
    chosen = set(_together(spans)) if spans else set()
    for i, start, _ in spans:
        if i not in chosen:
            left_out.append({"host": members[i][0].host, "why": "its run (from %s) was not under way with the "
                                                               "others'" % members[i][0].started_at})
    hosts = [members[i] for i in sorted(chosen)]
    facts = _numbers(hosts)
    if chosen:
        ours = [(start, end) for i, start, end in spans if i in chosen]
        facts["overlap_s"] = round(max(0.0, min(end for _, end in ours) - max(start for start, _ in ours)), 3)
    texts = list(dict.fromkeys([str(text) for _, result in hosts for text in result.get("expect") or ()]))
    conditions, unjudged = _conditions(texts)
    conditions += [c for c in thresholds if c.text not in texts]
    status, message = _judge(facts, conditions, hosts)
    if broken:  # a host's load not added: the sum is not the target's
        status, message = "error", "; ".join(broken + ([message] if status != "pass" else []))
    per_host = [dict({"host": report.host, "status": result["status"]}, **{
        key: (result.get("facts") or {}).get(key) for key in ("rps", "count", "errors", "p50_ms", "p95_ms",
                                                               "p99_ms")}) for report, result in members]
    return {"target": name, "hosts": [report.host for report, _ in hosts], "left_out": left_out, "status": status,
            "message": message, "expect": [c.text for c in conditions], "unjudged": unjudged, "facts": facts,
            "per_host": per_host}


def _numbers(hosts: List[Tuple[Any, Dict[str, Any]]]) -> Dict[str, Any]:
    """The merged numbers of the hosts' loads: sums, then the latencies (exact or from the sketches)."""
    from checks.probes.samples import PERCENTILES

    shares = [result["facts"] for _, result in hosts]
    count, ok, errors = (int(sum(f[key] for f in shares)) for key in ("count", "ok", "errors"))
    kinds: Dict[str, int] = collections.Counter()
    for f in shares:
        kinds.update({str(k): int(v) for k, v in f.get("errors_by_kind", {}).items()})
    facts: Dict[str, Any] = {"count": count, "ok": ok, "errors": errors,
                             "error_rate": round(errors / count, 6) if count else 1.0, "errors_by_kind": dict(kinds),
                             "rps": round(sum(f["rps"] for f in shares), 1),
                             "duration_s": max([_number(f.get("duration_s")) or 0.0 for f in shares] + [0.0]),
                             "n": ok}
    with_latency = [f for f in shares if f["ok"]]
    if with_latency and all(_number(f.get(key)) is not None for f in with_latency for key in ("min_ms", "max_ms",
                                                                                               "mean_ms")):
        facts.update(min_ms=min(f["min_ms"] for f in with_latency), max_ms=max(f["max_ms"] for f in with_latency),
                     mean_ms=round(math.fsum(f["mean_ms"] * f["ok"] for f in with_latency) / ok, 3))
    exact, why = _exact(shares, ok)
    if exact is not None:
        facts.update(exact)
        facts["percentiles_from"] = "samples"
    else:
        found, why = _sketched(shares, facts)
        if found is not None:
            facts.update(found)
    short = {name: ("insufficient samples: %d of the %d %s needs" % (ok, needed, name) if ok < needed else
                    "not merged: %s" % why) for name, _, needed in PERCENTILES if name not in facts}
    if short:
        facts["insufficient"] = short
    return facts


def _exact(shares: List[Dict[str, Any]], ok: int) -> Tuple[Optional[Dict[str, Any]], str]:
    """The exact latencies of every sample every host kept; None, and why, when one did not."""
    from checks.probes.samples import Samples, summarise

    lacking = [f for f in shares if f["ok"] and len(f.get("samples_ms") or ()) != f["ok"]]
    if lacking or not ok:
        return None, "a report kept no samples"
    if ok > MAX_SAMPLES:
        return None, "more than %d samples kept" % MAX_SAMPLES
    total = Samples()
    for f in shares:
        total.latencies.extend(f.pop("samples_ms", ()))  # each host's array freed as it is added
    total.sort_runs()
    found = summarise(total)
    return {key: found[key] for key in found if key.endswith("_ms") or key == "histogram"}, ""


def _sketched(shares: List[Dict[str, Any]], facts: Dict[str, Any]) -> Tuple[Optional[Dict[str, Any]], str]:
    """The percentiles of the hosts' latency sketches added bucket by bucket, each within the
    sketches' accuracy of the exact one (and within min and max); None, and why, when a host's
    report has no sketch or one of another accuracy."""
    from checks.probes.samples import sketch_percentiles

    accuracies, counts = set(), collections.Counter()
    for f in shares:
        sketch = f.get("latency_sketch")
        if not f["ok"]:
            continue
        buckets = sketch.get("buckets") if isinstance(sketch, dict) else None
        if not isinstance(buckets, list) or _number(sketch.get("accuracy")) is None or not all(
                isinstance(b, list) and len(b) == 2 and all(type(v) is int for v in b) and b[1] >= 0 for b in buckets) \
                or sum(b[1] for b in buckets) != f["ok"]:
            return None, "a report has no latency sketch of all its samples (from an older smoke.py?)"
        accuracies.add(sketch["accuracy"])
        for index, count in buckets:
            counts[index] += count
    if len(accuracies) != 1:
        return None, "the reports' latency sketches are of different accuracies (%s)" % sorted(accuracies) \
            if accuracies else "no latency"
    accuracy = accuracies.pop()
    low, high = facts.get("min_ms", 0.0), facts.get("max_ms", float("inf"))
    found = {name: round(min(max(value, low), high), 3) for name, value in sketch_percentiles(
        sorted(counts.items()), accuracy).items()}
    found.update(percentiles_from="sketch", accuracy=accuracy)
    return found, ""


def _conditions(texts: List[str]) -> Tuple[List[Any], List[str]]:
    """The hosts' thresholds as conditions on the merged load; those that cannot be judged on it
    (a ratio to a baseline, text no smoke.py wrote) said."""
    from checks import ConfigError
    from checks.perf import RATIOS, _conditions as parse

    conditions, unjudged = [], []
    for text in texts:
        try:
            conditions += parse([text], "threshold", None)
        except ConfigError as exc:
            ratio = text.lstrip().startswith(RATIOS)
            unjudged.append("%s: %s" % (text, "a ratio to the host's own baseline: judged on that host alone" if ratio
                                        else str(exc).split(": ", 1)[-1]))
    return conditions, unjudged


def _judge(facts: Dict[str, Any], conditions: List[Any], hosts: List[Tuple[Any, Dict[str, Any]]]) -> Tuple[str, str]:
    """(status, message) as perf judges a load: a threshold on a percentile that could not be
    merged, or a host's own trouble, is an error; a threshold missed, or a load cut short, a fail."""
    from checks import expect
    from checks.perf import _summary_line, metric_of

    facts["observed"] = observed = {}  # none when no host's load is merged
    if not hosts:
        return "error", "no host's load can be merged"
    errors, problems = [], []
    view = dict(facts)
    kinds = [c.path[1] for c in conditions if metric_of(c) == "errors_by_kind" and len(c.path) == 2]
    view["errors_by_kind"] = dict({kind: 0 for kind in kinds}, **facts["errors_by_kind"])
    for condition in conditions:
        why = (facts.get("insufficient") or {}).get(metric_of(condition))
        if why:
            errors.append("%s: %s" % (condition.text, why))
            observed[condition.text] = why
            continue
        seen = expect.observed(condition, view)
        observed[condition.text] = "missing" if seen is expect.MISSING else seen
        problems += expect.failures([condition], view)
    for report, result in hosts:
        own = result["facts"]
        if own.get("trouble") or own.get("error"):
            errors.insert(0, "%s: %s" % (report.host, own.get("trouble") or own.get("error")))
        elif own.get("deadline_exceeded") or own.get("aborted"):
            problems.insert(0, "%s's load was cut short (%s)" % (report.host, own.get("aborted") or "its deadline"))
    if errors:
        return "error", "; ".join(errors + problems)
    if problems:
        return "fail", "; ".join(problems)
    return "pass", _summary_line(facts) + " over %d hosts" % len(hosts)
