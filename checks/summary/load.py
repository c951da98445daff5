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
"""

from __future__ import annotations

import array
import collections
import math

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

MAX_SAMPLES = 20000000  # kept samples merged exactly, at most (160 MB); past that, the sketches
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
        if isinstance(kept, list) and all(_number(value) is not None for value in kept):
            out["facts"]["samples_ms"] = array.array("d", kept)
    return out


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def _epoch(stamp: Any) -> Optional[float]:
    """2026-12-07T04:02:32.018Z in seconds since the epoch; None when it is not one."""
    import calendar
    import time

    try:
        return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + stamp[19:-1])
    except (TypeError, ValueError):
        return None


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
    """The members whose runs were under way at the moment most were (the earliest such)."""
    moment = max((start for _, start, _ in spans), key=lambda t: (sum(s <= t <= e for _, s, e in spans), -t))
    return [i for i, start, end in spans if start <= moment <= end]


def merge(name: str, members: List[Tuple[Any, Dict[str, Any]]], thresholds: Tuple[Any, ...] = ()) -> Dict[str, Any]:
    """One target's load on several hosts as one result (the module's docstring says how)."""
    left_out, spans = [], []
    for i, (report, result) in enumerate(members):
        facts = result.get("facts") or {}
        start, took = _epoch(report.started_at), _number(report.duration_ms)
        if result["status"] == "skip" or not all(_number(facts.get(key)) is not None for key in ("count", "ok",
                                                                                                   "errors", "rps")):
            left_out.append({"host": report.host, "why": "its load has no numbers (%s: %s)" % (
                result["status"], result.get("message") or "no facts")})
        elif start is None or took is None:
            left_out.append({"host": report.host, "why": "its report does not say when it ran"})
        else:
            spans.append((i, start, start + took / 1000.0))
    chosen = _together(spans) if spans else []
    for i, start, _ in spans:
        if i not in chosen:
            left_out.append({"host": members[i][0].host, "why": "its run (from %s) was not under way with the "
                                                               "others'" % members[i][0].started_at})
    hosts = [members[i] for i in chosen]
    facts = _numbers(hosts)
    if chosen:
        ours = [(start, end) for i, start, end in spans if i in chosen]
        facts["overlap_s"] = round(max(0.0, min(end for _, end in ours) - max(start for start, _ in ours)), 3)
    texts = list(dict.fromkeys([str(text) for _, result in hosts for text in result.get("expect") or ()]))
    conditions, unjudged = _conditions(texts)
    conditions += [c for c in thresholds if c.text not in texts]
    status, message = _judge(facts, conditions, hosts)
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
        kinds.update({str(k): int(v) for k, v in (f.get("errors_by_kind") or {}).items() if _number(v) is not None}
                     if isinstance(f.get("errors_by_kind"), dict) else {})
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
        counts.update({index: count for index, count in buckets})
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

    if not hosts:
        return "error", "no host's load can be merged"
    errors, problems, observed = [], [], {}
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
    facts["observed"] = observed
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
