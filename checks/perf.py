"""perf: latency percentiles, throughput and error rate under load, judged against thresholds.

Config section:
    {"perf": {"targets": [
        {"name": "planner", "url": "http://127.0.0.1:8080/plan", "method": "POST", "json": {...},
         "connections": 10, "duration": 10, "warmup": 1, "thresholds": ["p95_ms < 200", "error_rate < 0.01"]},
        {"name": "router", "url": "...", "rate": 200, "duration": 10, "thresholds": ["p95_ms < 100"]},
        {"name": "cli", "command": ["mytool", "--version"], "runs": 30, "thresholds": ["p50_ms < 50"]}]}}
Closed load (connections, each sending when its last answer came; requests = M or
duration = S) unless `rate` is given (open load at that many per second, latency from
each request's scheduled time). Percentiles are nearest-rank over every sample.
"""

from __future__ import annotations

import collections
import json
import math
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional

from checks import ConfigError, expect
from checks.command import Command
from checks.config import Fields, same_name
from checks.model import Outcome, Planned, Result, cut
from checks.probes.samples import PERCENTILES, summarise

NAME = "perf"
METRICS = ("count", "ok", "errors", "error_rate", "rps", "n", "min_ms", "mean_ms", "max_ms", "duration_s") + tuple(
    name for name, _, _ in PERCENTILES)
RATIOS = ("p50_ratio", "p95_ratio", "p99_ratio", "rps_ratio")
DEFAULT_THRESHOLDS = ("error_rate < 0.01",)  # with none given: a target that answers nothing is no pass
MAX_REQUESTS = 100000000
MAX_DURATION_S = 24 * 3600.0
MAX_RUNS = 100000


class Target(collections.namedtuple("Target", "name kind load command runs thresholds timeout abort_on_fail "
                                                "keep_samples", defaults=(False, False))):
    """One thing to load: an HTTP request (load, a probes.load.Load) or a command (command,
    runs); its thresholds are conditions on the metrics. abort_on_fail: the limits are worked
    out from the load as it is run (after the flags changed it), never kept from before.
    keep_samples: the report has every latency (loads on several hosts merge exactly)."""

    __slots__ = ()


class Spec(collections.namedtuple("Spec", "targets baseline save_baseline")):
    __slots__ = ()


def add_arguments(parser) -> None:
    from checks.config import bounded
    from checks.model import MAX_TIMEOUT_S

    group = parser.add_argument_group("one HTTP target, without a config file")
    group.add_argument("--url", metavar="URL", help="the request to send under load")
    group.add_argument("--method", metavar="METHOD", help="default GET (POST with --json)")
    group.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="repeatable")
    group.add_argument("--json", metavar="BODY", help="a JSON request body")
    group.add_argument("--insecure", action="store_true", help="do not verify the server's certificate")
    load = parser.add_argument_group("the load (for --url, or changing every configured target)")
    load.add_argument("--connections", type=bounded(1, 10000, integer=True), metavar="N",
                      help="connections in parallel: the load's parallelism, not --concurrency (default 10)")
    load.add_argument("--duration", type=bounded(0.001, MAX_DURATION_S), metavar="S", help="seconds of load")
    load.add_argument("--requests", type=bounded(1, MAX_REQUESTS, integer=True), metavar="N",
                      help="stop after N requests (default: --duration, else 10 s)")
    load.add_argument("--rate", type=bounded(0.001, 1000000), metavar="R",
                      help="open load: R requests per second on a fixed schedule (default: closed load)")
    load.add_argument("--warmup", type=bounded(0, 3600), metavar="S", help="seconds sent but not counted")
    load.add_argument("--timeout", type=bounded(0.001, MAX_TIMEOUT_S), metavar="S",
                      help="seconds per request before it counts as a timeout (default 10)")
    load.add_argument("--threshold", action="append", default=[], metavar="COND",
                      help="e.g. 'p95_ms < 200', 'error_rate < 0.01', 'rps > 100' (repeatable)")
    load.add_argument("--abort-on-fail", action="store_true",
                      help="stop early once a threshold can no longer be met (errors, max_ms, error_rate of "
                           "--requests)")
    load.add_argument("--keep-samples", action="store_true",
                      help="keep every latency in the report (up to a million), so that `smoke.py summary` "
                           "merges the loads of several hosts into exact percentiles")
    load.add_argument("--baseline", metavar="FILE", help="an earlier report or baseline: adds p50_ratio, p95_ratio, "
                                                         "p99_ratio, rps_ratio (this run / that one)")
    load.add_argument("--save-baseline", metavar="FILE", help="write this run's numbers, for a later --baseline")


def from_args(args, secrets, configured: Optional[Spec] = None) -> Optional[Spec]:
    """A one-target spec from --url, or the configured one with the load flags applied;
    None when no flag says anything."""
    changed = {key: getattr(args, key) for key in ("connections", "duration", "requests", "rate", "warmup",
                                                   "timeout") if getattr(args, key) is not None}
    if configured is not None:
        if args.url:
            raise ConfigError("--url describes one target, and the config's perf section others: use one or the other")
        targets = [_with_load(target, changed, "--" + NAME) for target in configured.targets]
        baseline = _baseline(args.baseline, "--baseline") if args.baseline else configured.baseline
        if not (changed or args.threshold or args.baseline or args.save_baseline or args.abort_on_fail
                or args.keep_samples):
            return None
        targets = [t._replace(thresholds=t.thresholds + _conditions(args.threshold, "--threshold", baseline),
                              abort_on_fail=t.abort_on_fail or args.abort_on_fail,
                              keep_samples=t.keep_samples or args.keep_samples) for t in targets]
        if args.save_baseline:
            _check_baseline_path(args.save_baseline, "--save-baseline", args.config)
        return configured._replace(targets=targets, baseline=baseline,
                                   save_baseline=args.save_baseline or configured.save_baseline)
    if not args.url:
        return None
    table: Dict[str, Any] = {"name": "url", "url": args.url, "thresholds": args.threshold or list(DEFAULT_THRESHOLDS)}
    table.update(changed)
    if args.method:
        table["method"] = args.method
    if args.json is not None:
        from checks.config import parse_json
        table["json"] = parse_json(args.json, "--json")
    if args.header:
        from checks.probes.http import header_flags
        table["headers"] = header_flags(args.header)
    if args.insecure:
        table["insecure"] = True
    if args.abort_on_fail:
        table["abort_on_fail"] = True
    if args.keep_samples:
        table["keep_samples"] = True
    from checks.secrets import collect_fields
    collect_fields(table, secrets)  # an Authorization header's value is a secret, as in a config
    baseline = _baseline(args.baseline, "--baseline") if args.baseline else None
    if args.save_baseline:
        _check_baseline_path(args.save_baseline, "--save-baseline", args.config)
    return Spec([_target(table, "--url", baseline)], baseline, args.save_baseline)


def _check_baseline_path(path: str, where: str, config: Optional[str] = None) -> None:
    """A baseline that could not be written, or would replace a config (this run's --config,
    or one a run would find), is refused before the load, not after it (exit 2)."""
    from checks import sinks
    sinks.check_report(path, where, config)


def load(section, where: str = NAME) -> Spec:
    fields = Fields(section, where)
    baseline_path = fields.path("baseline", None)
    baseline = _baseline(baseline_path, fields.at("baseline")) if baseline_path else None
    tables = fields.get("targets", (list,))
    if not tables:
        raise ConfigError("%s: give at least one target" % fields.at("targets"))
    targets, names = [], set()
    for i, table in enumerate(tables):
        target = _target(table, "%s[%d]" % (fields.at("targets"), i), baseline)
        if same_name(target.name) in names:
            raise ConfigError("%s[%d].name: %r is taken: every target needs its own" % (fields.at("targets"), i,
                                                                                         target.name))
        names.add(same_name(target.name))
        targets.append(target)
    spec = Spec(targets, baseline, fields.path("save_baseline", None))
    if spec.save_baseline:
        _check_baseline_path(spec.save_baseline, fields.at("save_baseline"))
    fields.done()
    return spec


def _target(table, where: str, baseline) -> Target:
    from checks.probes import http

    fields = Fields(table, where)
    name = fields.text("name")
    if not name or "/" in name:
        raise ConfigError("%s: a target's name is not empty and has no '/'" % fields.at("name"))
    thresholds = _conditions(fields.strings("thresholds", list(DEFAULT_THRESHOLDS)), fields.at("thresholds"),
                             baseline)
    timeout = fields.number("timeout", 10.0, 0.001, 3600)
    if "command" in table:
        from checks.kinds import command
        params = command.load(fields)
        if params["leave_running"]:  # a timed command is the run's, as a health check's is
            raise ConfigError("%s: a perf target is timed, and what it leaves is stopped: leave_running is for steps "
                              "that change the system (rollback, deploy's deploy)" % fields.at("leave_running"))
        runs = fields.integer("runs", 10, 1, MAX_RUNS)
        target = Target(name, "command", None, params, runs, thresholds, timeout,
                        keep_samples=fields.flag("keep_samples", False))
        _no_load_fields(fields, ("connections", "rate", "duration", "requests"))
        fields.done()
        return target
    request = http.load_request(fields)
    load = _load(fields, request, timeout)
    abort_on_fail = fields.flag("abort_on_fail", False)
    keep_samples = fields.flag("keep_samples", False)
    fields.done()
    return Target(name, "http", load, None, 0, thresholds, timeout, abort_on_fail, keep_samples)


def _no_load_fields(fields: Fields, keys) -> None:
    for key in keys:
        if key in fields.data:
            raise ConfigError("%s: a command target runs `runs` times, one after another: %s is for HTTP targets"
                              % (fields.at(key), key))


def _load(fields: Fields, request, timeout: float):
    """The Load for an HTTP request: its bytes, the model and its bounds."""
    from urllib.parse import urlsplit

    from checks.probes import load as probe

    parts = urlsplit(request.url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname or ""
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    body = request.body.encode("utf-8") if isinstance(request.body, str) else request.body
    data = probe.request_bytes(request.method, host_header, target, request.headers, body)
    connections = fields.integer("connections", 10, 1, probe.MAX_CONNECTIONS)
    rate = fields.number("rate", None, 0.001, 1000000)
    requests = fields.integer("requests", None, 1, MAX_REQUESTS)
    duration = fields.number("duration", None if requests else 10.0, 0.001, MAX_DURATION_S)
    warmup = fields.number("warmup", 0.0, 0, 3600)
    if rate is not None and duration is None:
        raise ConfigError("%s: an open load (rate) runs for a duration: give duration" % fields.at("rate"))
    return probe.Load(host, port, tls, host, request.insecure, request.ca_file, data, connections, requests,
                      duration, rate, warmup, timeout)


def fixed_requests(load) -> Optional[int]:
    """The requests a load will send when their number is fixed: `requests`, or an open
    load's schedule; None for a closed load bounded by its duration."""
    from checks.probes import load as probe
    return probe.schedule(load)[1] if load.rate is not None else load.requests


def _allowed(limit: float, strict: bool) -> int:
    """Errors `errors < limit` (strict) or `<= limit` allows; 0.29 * 100 is 28.999999999999996,
    so the product is rounded to 9 decimals before ceil or floor."""
    limit = round(limit, 9)
    return math.ceil(limit) - 1 if strict else math.floor(limit)


def _with_limits(load, thresholds):
    """The limits past which a threshold can no longer be met, whatever comes after: more
    errors than `errors < N` allows (or `error_rate < X` of a fixed number of requests),
    an answer slower than `max_ms < X`. Percentiles and rates can still recover: no limit."""
    max_errors, max_latency = None, None
    fixed = fixed_requests(load)
    for condition in thresholds:
        subject = metric_of(condition)
        if condition.op not in ("<", "<=") or isinstance(condition.value, bool) or \
                not isinstance(condition.value, (int, float)) or len(condition.path) != 1:
            continue
        value, strict = float(condition.value), condition.op == "<"
        allowed = None
        if subject == "errors":
            allowed = _allowed(value, strict)
        elif subject == "error_rate" and fixed:
            allowed = _allowed(value * fixed, strict)
        elif subject == "max_ms":
            max_latency = value if max_latency is None else min(max_latency, value)
        if allowed is not None:
            max_errors = max(0, allowed) if max_errors is None else min(max_errors, max(0, allowed))
    return load._replace(max_errors=max_errors, max_latency_ms=max_latency)


def _with_load(target: Target, changed: Dict[str, Any], where: str) -> Target:
    """A configured target with the load flags applied (HTTP targets only)."""
    if not changed or target.load is None:
        return target
    load = target.load._replace(**{key: value for key, value in changed.items() if key != "timeout"})
    if "requests" in changed and "duration" not in changed:
        load = load._replace(duration=None)
    if "timeout" in changed:
        load = load._replace(timeout=changed["timeout"])
    if load.rate is not None and load.duration is None:
        raise ConfigError("--rate: an open load runs for a duration: give --duration")
    return target._replace(load=load, timeout=load.timeout)


def metric_of(condition) -> str:
    """The metric a threshold is about (p95_ms in 'p95_ms < 200')."""
    return str(condition.path[0]) if condition.path else condition.subject


def _conditions(texts: List[str], where: str, baseline) -> tuple:
    """Thresholds as parsed conditions, each on a metric perf gives (a typo is exit 2, not
    a threshold that can never be judged)."""
    from checks.config import conditions

    known = METRICS + RATIOS + ("errors_by_kind",)
    parsed = []
    for label, condition in conditions(texts, where, "--threshold"):
        subject = metric_of(condition)
        if subject not in known:
            import difflib
            close = difflib.get_close_matches(subject, known, n=1)
            raise ConfigError("%s: %r is not a perf metric%s (metrics: %s)" % (
                label, subject, "; did you mean %s?" % close[0] if close else "", ", ".join(known)))
        depth = 2 if subject == "errors_by_kind" else 1  # errors_by_kind.timeout; p95_ms.x is no metric
        named = ".".join(str(part) for part in condition.path[:depth])
        if len(condition.path) > depth:
            raise ConfigError("%s: %s is a number: it has no %r" % (label, named, ".".join(
                str(part) for part in condition.path[depth:])))
        if isinstance(condition.value, float) and not math.isfinite(condition.value):
            raise ConfigError("%s: %r is not a finite number: nothing can be compared with it" % (label,
                                                                                                  condition.value))
        numeric = condition.op in ("<", "<=", ">", ">=") and len(condition.path) == depth
        if numeric and (isinstance(condition.value, bool) or not isinstance(condition.value, (int, float))):
            raise ConfigError("%s: %s is compared with a number (%s), got %r: write it without a unit, e.g. "
                              "'p95_ms < 200', 'error_rate < 0.01'" % (label, named, "milliseconds" if
                                                                       subject.endswith("_ms") else "a plain number",
                                                                       condition.value))
        if subject in RATIOS and baseline is None:
            raise ConfigError("%s: %s compares with a baseline: give --baseline FILE (or baseline in the "
                              "section)" % (label, subject))
        parsed.append(condition)
    return tuple(parsed)


def _baseline(path: str, where: str) -> Dict[str, Dict[str, Any]]:
    """{target: its metrics} from an earlier report or saved baseline."""
    from checks import fsio
    from checks.config import parse_json, read_trusted

    try:
        data = read_trusted(path, 64 * 1024 * 1024, 10.0, "it decides whether this run's ratios pass")
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (where, exc))
    except OSError as exc:
        raise ConfigError("%s: cannot read %s: %s" % (where, path, fsio.why(exc)))
    try:
        doc = parse_json(data.decode("utf-8"), "%s: %s" % (where, path))  # keys twice: which would it be?
        targets = doc["metrics"]["perf"]["targets"]
        if not isinstance(targets, dict):
            raise TypeError
    except UnicodeDecodeError:
        raise ConfigError("%s: %s is not JSON" % (where, path))
    except (KeyError, TypeError):
        raise ConfigError("%s: %s has no metrics.perf.targets: give a report of `smoke.py perf` or a file "
                          "--save-baseline wrote" % (where, path))
    return targets


def plan(spec: Spec) -> List[Planned]:
    planned = []
    for target in spec.targets:
        if target.kind == "command":
            from checks.probes import proc
            what = "%s, %d runs" % (proc.describe(target.command["command"]), target.runs)
        else:
            load = target.load
            model = ("%g/s open" % load.rate if load.rate else "%d connections" % load.connections)
            bound = "%d requests" % load.requests if load.requests else "%gs" % load.duration
            what = "%s %s, %s, %s%s" % (load.request.split(b" ", 1)[0].decode(), _url(target), model, bound,
                                       ", warmup %gs" % load.warmup if load.warmup else "")
        planned.append(Planned(target.name, NAME, "perf", what, tuple(c.text for c in target.thresholds)))
    return planned


def notice(spec: Spec) -> List[str]:
    """Said on a terminal before a load goes to a host that is not this one: what will be sent."""
    import ipaddress

    lines = []
    for target in spec.targets:
        load = target.load
        if load is None or load.host in ("localhost",):
            continue
        try:
            if ipaddress.ip_address(load.host).is_loopback:
                continue
        except ValueError:
            pass
        if load.rate:
            amount = "about %d requests (%g/s for %gs)" % (fixed_requests(load), load.rate, load.duration)
        elif load.requests:
            amount = "%d requests over %d connections" % (load.requests, load.connections)
        else:
            amount = "as many requests as %d connections get answered in %gs" % (load.connections, load.duration)
        lines.append("smoke.py perf: sending %s to %s (%s)" % (amount, load.host, target.name))
    return lines


def _url(target: Target) -> str:
    load = target.load
    path = load.request.split(b" ", 2)[1].decode("latin-1")
    host = "[%s]" % load.host if ":" in load.host else load.host  # an IPv6 address, as a URL writes it
    return "%s://%s:%d%s" % ("https" if load.tls else "http", host, load.port, path)


def run(spec: Spec, ctx) -> Outcome:
    from checks import CheckError
    from checks.lifecycle import Interrupted

    results, metrics = [], {"targets": {}}
    chosen = ctx.chosen
    targets = [t for t in spec.targets if chosen is None or t.name in chosen]
    ends = time.monotonic() + ctx.deadline_s if ctx.deadline_s else None  # the run's deadline bounds every load
    for target in targets:
        started = time.monotonic()
        if ends is not None and started >= ends:
            results.append(Result(target.name, NAME, "perf", "fail", "deadline exceeded (%s): not started" % ctx.deadline_flag,
                                  target=plan(Spec([target], None, None))[0].target))
            continue
        try:
            facts = _measure(target, ctx, ends)
        except CheckError as exc:  # the load could not start (a name that does not resolve)
            results.append(Result(target.name, NAME, "perf", "error", ctx.redact(str(exc)),
                                  (time.monotonic() - started) * 1000, 1))
            continue
        except Interrupted as exc:  # the targets done are kept; the rest say they were not run
            done = {r.name for r in results}
            raise exc.carrying(results + [Result(t.name, NAME, "perf", "skip", "interrupted") for t in targets
                                          if t.name not in done], {NAME: metrics}) from None
        if spec.baseline is not None:
            facts.update(_ratios(facts, spec.baseline.get(target.name), target.name, sorted(spec.baseline)))
        status, message = _judge(target, facts, ctx)
        if facts.get("connections_limited"):
            message += "; " + facts["connections_limited"]
        metrics["targets"][target.name] = {key: value for key, value in facts.items()
                                           if key not in ("histogram", "observed", "latency_sketch", "samples_ms")}
        result = Result(target.name, NAME, "perf", status, ctx.redact(message), (time.monotonic() - started) * 1000,
                        1, facts=facts, target=plan(Spec([target], None, None))[0].target,
                        expect=tuple(c.text for c in target.thresholds))
        results.append(result)
        if ctx.on_result:
            ctx.on_result(result)
    if spec.save_baseline:
        results = _save_baseline(spec.save_baseline, metrics, results, ctx)
    return Outcome(results, metrics)


def _save_baseline(path: str, metrics: Dict[str, Any], results: List[Result], ctx) -> List[Result]:
    """Write the baseline; one that could not be written is said on the results whose numbers
    it was to keep (a pass becomes an error, as a pass nobody can read is none), not as a
    check of its own."""
    from checks import sinks

    problem = sinks.write_output(path, json.dumps(
        {"schema": "smoke.perf-baseline/1", "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         "metrics": {"perf": metrics}}, indent=2) + "\n")
    if not problem:
        return results
    said = ctx.redact("--save-baseline %s: not written: %s" % (path, problem))
    return [r._replace(status="error" if r.status == "pass" else r.status, message=r.message + "; " + said)
            if r.name in metrics["targets"] else r for r in results]


def _measure(target: Target, ctx, ends: Optional[float] = None) -> Dict[str, Any]:
    """The metrics of one target's run: counts, rates, latencies, errors by kind."""
    from checks.probes import load as probe

    limited = None
    if target.kind == "command":
        samples, problem = _run_command(target, ctx, ends)
        if problem:  # the command cannot be run at all: no measurement, an error
            facts = summarise(samples, target.keep_samples)
            facts["error"] = problem
            return facts
    else:
        progress = (lambda count, seconds: ctx.on_progress("perf %s: %.1fs, %d requests, %.0f req/s" % (
            target.name, seconds, count, count / max(seconds, 1e-9)))) if ctx.on_progress else None
        load = target.load
        fits, limit = probe.fd_fit(load.connections)
        if limit:  # as --concurrency is fitted: connections failing with EMFILE would be the tool's doing
            limited = "%d connection%s, not %d: this process may open only %d files (ulimit -n)" % (
                fits, "" if fits == 1 else "s", load.connections, limit)
            load = load._replace(connections=fits)
        if target.abort_on_fail:  # from the load as it runs now, after the flags changed it
            load = _with_limits(load, target.thresholds)
        samples = probe.run(load, progress=progress, ends=ends, redact=ctx.redact)
    facts = summarise(samples, target.keep_samples)
    if limited:
        facts["connections_limited"] = limited
    if target.load is not None and samples.aborted:
        facts["planned"] = fixed_requests(target.load)
    return facts


def _run_command(target: Target, ctx, ends: Optional[float] = None):
    """A command run `runs` times, one after another, like hyperfine: each run a sample. The
    run's deadline bounds each run's timeout; a run it cut short is no sample."""
    from checks import CheckError
    from checks.probes import proc
    from checks.probes.samples import Samples

    samples = Samples()
    samples.started = time.time()
    params = target.command
    for _ in range(target.runs):
        began = time.monotonic()
        timeout = target.timeout if ends is None else min(target.timeout, ends - began)
        if timeout <= 0:
            samples.deadline = True
            break
        try:
            done = proc.run(params["command"], timeout, ctx.cleanup, params["shell"], params["env"],
                            params["cwd"], 4096)
        except CheckError as exc:
            samples.ended = time.time()
            return samples, str(exc)
        latency = (time.monotonic() - began) * 1000
        if done.exit_code is None and timeout < target.timeout:
            samples.deadline = True
            break
        if done.exit_code == 0:
            samples.latencies.append(latency)
        else:
            samples.errors["timeout" if done.exit_code is None else "exit %d" % done.exit_code] += 1
    samples.ended = time.time()
    return samples, None


def _ratios(facts: Dict[str, Any], before: Optional[Dict[str, Any]], name: str = "",
            known=()) -> Dict[str, Any]:
    """This run's numbers over the baseline's; a baseline number that is not a positive finite
    one (Infinity, 0, text) gives no ratio, and says why where a threshold needs it."""
    if not isinstance(before, dict):
        return {"baseline_missing": "the baseline has no target %r (it has: %s)" % (name, ", ".join(known) or "none")}
    out, unusable = {}, {}
    for ratio in RATIOS:
        metric = ratio.replace("_ratio", "_ms") if ratio != "rps_ratio" else "rps"
        now, then = facts.get(metric), before.get(metric)
        if not isinstance(now, (int, float)) or then is None:
            continue
        if isinstance(then, bool) or not isinstance(then, (int, float)) or not math.isfinite(then) or then <= 0:
            unusable[ratio] = "the baseline's %s is %s, not a positive number" % (metric, cut(repr(then), 40))
            continue
        out[ratio] = round(now / then, 4)
    if unusable:
        out["baseline_unusable"] = unusable
    return out


def _judge(target: Target, facts: Dict[str, Any], ctx):
    """(status, message): each threshold with what was observed (kept in facts["observed"],
    for the text report); a percentile from too few samples, or a ratio with no baseline,
    is an error, not a pass or a fail; so is the tool's own trouble (facts["trouble"])."""
    problems, errors, observed = [], [], {}
    view = dict(facts)
    kinds = [c.path[1] for c in target.thresholds if metric_of(c) == "errors_by_kind" and len(c.path) == 2]
    if kinds:  # a kind that did not happen happened 0 times
        view["errors_by_kind"] = dict({kind: 0 for kind in kinds}, **facts.get("errors_by_kind", {}))
    for condition in target.thresholds:
        subject = metric_of(condition)
        why = facts.get("insufficient", {}).get(subject)
        if why is None and subject in RATIOS and subject not in facts:
            why = facts.get("baseline_unusable", {}).get(subject) or facts.get(
                "baseline_missing", "no %s in the baseline" % subject.replace("_ratio", ""))
        if why is not None:
            errors.append("%s: %s" % (condition.text, why))
            observed[condition.text] = why
            continue
        seen = expect.observed(condition, view)
        observed[condition.text] = "missing" if seen is expect.MISSING else seen
        problems += expect.failures([condition], view, time.monotonic() + 5, ctx.redact)
    facts["observed"] = observed
    if facts.get("error"):
        return "error", facts["error"]
    if facts.get("trouble"):  # the tool's own (a worker lost, a descriptor limit): no verdict on the server
        return "error", facts["trouble"]
    if facts.get("deadline_exceeded"):  # what the numbers would have been is unknown: they say nothing more
        from checks.runner import deadline_said
        return "fail", "deadline exceeded (%s): the load was cut short after %ss" % (deadline_said(ctx),
                                                                                    facts["duration_s"])
    if not facts["count"]:
        return "error", "no request was sent"
    if facts.get("aborted"):
        fixed = facts.get("planned")
        problems.insert(0, "aborted early (abort_on_fail): %s; error_rate and the rest are of the %d requests "
                           "sent%s" % (facts["aborted"], facts["count"],
                                       ", not the %d planned" % fixed if fixed else ""))
    if errors:
        return "error", "; ".join(errors + problems)
    if problems:
        return "fail", "; ".join(problems)
    return "pass", _summary_line(facts)


def _summary_line(facts: Dict[str, Any]) -> str:
    parts = ["%s %s ms" % (name[:-3], facts[name]) for name in ("p50_ms", "p95_ms", "p99_ms") if name in facts]
    parts.append("%s req/s" % facts["rps"])
    parts.append("%.2f%% errors" % (facts["error_rate"] * 100))
    return ", ".join(parts)


class Perf(Command):
    NAME = NAME
    FLAGS = "--url"
    EXAMPLES = """  python3 smoke.py perf --url http://127.0.0.1:8080/health --duration 10 --connections 10 \\
      --threshold 'p95_ms < 200' --threshold 'error_rate < 0.01' --format text
  python3 smoke.py perf --url http://127.0.0.1:8080/plan --rate 200 --duration 30 --threshold 'p99_ms < 500'
  python3 smoke.py perf --config smoke.json --baseline last-perf.json --threshold 'p95_ratio < 1.2'
"""
    add_arguments = staticmethod(add_arguments)
    from_args = staticmethod(from_args)
    load = staticmethod(load)
    plan = staticmethod(plan)
    run = staticmethod(run)
    notice = staticmethod(notice)

    def flags_describe(self, args) -> bool:
        return bool(args.url)


COMMAND = Perf()
