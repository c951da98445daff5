"""rollback: triggers → steps → verify → incident record.

Config section:
    {"rollback": {"triggers": ["pass_rate < 0.95", "p95_ms > 500", "check.api.status == fail"],
                  "run": ["health"],
                  "steps": [{"name": "revert", "kind": "command", "command": ["git", "revert", "--no-edit", "HEAD"]}],
                  "verify": ["health"], "settle": 5, "verify_timeout": 120, "verify_interval": 5,
                  "time_budget": 900, "cooldown": 1800, "incident_log": "...", "rollback_log": "..."}}
The triggers are conditions on a report (--from FILE, or the sections --run names, run
first); any one that holds fires. Without --execute nothing is done: the plan is said, and
the exit code is 1 when a rollback is needed. The steps are steps (checks/steps.py), and
verification re-runs sections through the subcommand face (ctx.run_sections).
"""

from __future__ import annotations

import collections
import json
import os
import socket
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

from checks import ConfigError, expect, fsio, incident, lifecycle, state, steps
from checks.command import Command
from checks.config import Fields, parse_json, same_name
from checks.model import PASSING, Outcome, Planned, Result, cut, utc_timestamp

NAME = "rollback"
RESERVED = ("report", "triggers", "lock", "cooldown", "verify", "time_budget", "incident")  # its own results
MAX_REPORT = 64 << 20
_STDIN_TIMEOUT_S = 60.0  # for a report piped in: a writer that never finishes cannot hang us
_JUDGE_S = 5.0  # for a trigger's regular expression
_WORST_IS_LOWEST = ("rps", "rps_ratio", "ok")  # across perf targets, the worst is the highest, except these
# What a trigger can name first: a report's summary and verdict, the run history, each check,
# the metrics (perf's and heartbeat's by name; deploy's targets). Anything else is a typo.
_SUMMARY = ("total", "pass", "warn", "fail", "error", "skip", "pass_rate")
_ROOTS = _SUMMARY + ("status", "exit_code", "command", "consecutive_failures", "check", "metrics", "perf",
                     "targets", "detection_s", "event_detection_s", "deadline_s", "expected_bound_s", "steady_s",
                     "beat_interval_s", "run_dir")


class Spec(collections.namedtuple("Spec", "triggers on_no_data source run steps verify settle verify_timeout "
                                          "verify_interval time_budget cooldown incident_log rollback_log lock "
                                          "execute force")):
    __slots__ = ()


def add_arguments(parser) -> None:
    group = parser.add_argument_group("the report the triggers are judged on (one of)")
    group.add_argument("--from", dest="from_report", metavar="FILE",
                       help="a report of an earlier run (health, perf, all); - reads it from stdin")
    group.add_argument("--run", action="append", default=[], metavar="SECTION",
                       help="run this section of the config first and judge its report (repeatable)")
    act = parser.add_argument_group("what to do")
    act.add_argument("--trigger", action="append", default=[], metavar="COND",
                     help="fire when this holds, e.g. 'pass_rate < 0.95', 'p95_ms > 500' (repeatable; adds to "
                          "the config's)")
    act.add_argument("--execute", action="store_true",
                     help="run the steps and verify (default: a dry run that only says what it would do)")
    act.add_argument("--force", action="store_true", help="roll back even within the cooldown of the last one")


def from_args(args, secrets, configured: Optional[Spec] = None) -> Optional[Spec]:
    """The configured spec with the flags applied, or a steps-less one from --trigger (which
    can only say whether a rollback is needed); None when no flag says anything."""
    if args.from_report is not None and args.run:
        raise ConfigError("--from and --run: judge either a report or a run, not both")
    if args.from_report is not None and not args.from_report.strip():
        raise ConfigError("--from: give a report file, or - for stdin")
    if args.from_report not in (None, "-"):
        _trusted(args.from_report)
    if args.from_report == "-" and os.isatty(0):
        raise ConfigError("--from -: stdin is a terminal; pipe a report in (smoke.py health ... | smoke.py rollback "
                          "--from -)")
    for flag, given in (("--only", args.only), ("--tag", args.tag), ("--skip-tag", args.skip_tag)):
        if given:  # a rollback with some of its steps left out is no rollback
            raise ConfigError("%s: a rollback runs whole (its triggers, every step, its verification); choose "
                              "the checks in the sections it runs there" % flag)
    triggers = _conditions(args.trigger, "--trigger")
    if configured is None:
        if not triggers:  # the config's rollback section, if there is one, says when
            return None
        if args.execute:
            raise ConfigError("--execute: no steps to run: give a rollback section with steps (--config FILE)")
        if args.run:
            raise ConfigError("--run %s: sections come from a config file (--config FILE)" % args.run[0])
        configured = Spec((), "ignore", None, (), [], (), 0.0, 0.0, 5.0, 900.0, 1800.0, None, None, None, False,
                          False)
    spec = configured._replace(triggers=configured.triggers + triggers, execute=args.execute, force=args.force)
    if args.from_report is not None:
        spec = spec._replace(source=args.from_report, run=())
    elif args.run:
        spec = spec._replace(source=None, run=tuple(args.run))
    if spec.execute and not spec.steps:
        raise ConfigError("--execute: the rollback section has no steps to run")
    if not spec.triggers:
        raise ConfigError("rollback: no triggers: give triggers in the section, or --trigger COND")
    if spec.source is None and not spec.run and not (args.validate or args.dry_run):
        raise ConfigError("rollback: which report? give --from FILE (- for stdin)%s" % (
            ", or --run SECTION, or `run` in the rollback section" if spec.steps or spec.verify else ""))
    return spec


def load(section, where: str = NAME) -> Spec:
    fields = Fields(section, where)
    triggers = _conditions(fields.strings("triggers"), fields.at("triggers"))
    if not triggers:
        raise ConfigError("%s: give at least one trigger" % fields.at("triggers"))
    on_no_data = fields.choice("on_no_data", ("ignore", "fire"), "ignore")
    run = tuple(fields.strings("run", []))
    verify = tuple(fields.strings("verify", ["health"]))
    settle = fields.number("settle", 0.0, 0, 3600)
    verify_timeout = fields.number("verify_timeout", 60.0, 0, 86400)
    verify_interval = fields.number("verify_interval", 5.0, 0.01, 3600)
    time_budget = fields.number("time_budget", 900.0, 1, 7 * 86400)
    cooldown = fields.number("cooldown", 1800.0, 0, 30 * 86400)
    paths = {key: fields.path(key, None) for key in ("incident_log", "rollback_log", "lock")}
    tables = fields.get("steps", (list,), [])
    fields.done()
    if tables and not verify:
        raise ConfigError("%s: give the sections that prove the rollback worked (default: [\"health\"])"
                          % fields.at("verify"))
    builtins = {"run_id": "20260101T000000Z-abcdef", "reasons": "p95_ms 612 > 500", "report": "report.json"}
    known = set(builtins) | {"index"}
    loaded, names = [], set()
    for i, table in enumerate(tables):
        at = "%s[%d]" % (fields.at("steps"), i)
        name = str(table.get("name") or "step %d" % (i + 1)) if isinstance(table, dict) else ""
        if same_name(name) in names or name in RESERVED:
            raise ConfigError("%s.name: %r is %s: every step needs a name of its own" % (
                at, name, "taken" if same_name(name) in names else "one of rollback's own results"))
        names.add(same_name(name))
        if isinstance(table, dict) and table.get("kind") == "spawn":
            raise ConfigError("%s.kind: a spawned process is the run's, stopped when the steps end, before verify: "
                              "start what the rollback restores with a command (nginx, redis-server --daemonize "
                              "yes, systemctl start), whose daemon stays running" % at)
        if isinstance(table, dict):  # a step changes the system: what it starts is the system's
            table = dict({"leave_running": True} if table.get("kind") == "command" else {},
                         **{key: value for key, value in table.items() if key != "name"})
        loaded.append(steps.load(table, at, NAME, name, known, builtins))
    return Spec(triggers, on_no_data, None, run, loaded, verify, settle, verify_timeout, verify_interval,
                time_budget, cooldown, paths["incident_log"], paths["rollback_log"], paths["lock"], False, False)


def uses(spec: Spec) -> Tuple[str, ...]:
    """The other sections this one runs: --run's, then verify's (once steps can run)."""
    return tuple(dict.fromkeys(spec.run + (spec.verify if spec.steps else ())))


def _conditions(texts, where: str) -> tuple:
    """Triggers as parsed conditions, each on a fact a report has: a typo, or a unit in a
    number (95%, 500ms), would be a trigger that never fires, and says nothing."""
    import difflib

    from checks import perf

    from checks.config import conditions

    known = _ROOTS + perf.METRICS + perf.RATIOS + ("errors_by_kind",)
    parsed = []
    for label, condition in conditions(texts, where, "--trigger"):
        root = perf.metric_of(condition)
        if root not in known:
            close = difflib.get_close_matches(root, known, n=1)
            raise ConfigError("%s: a report has no %r%s (triggers name: the summary's %s; check.NAME.status; "
                              "consecutive_failures; perf's p95_ms, rps, ...; heartbeat's detection_s)" % (
                                  label, root, "; did you mean %s?" % close[0] if close else "", ", ".join(_SUMMARY)))
        parsed.append(condition)
    return tuple(parsed)


def check_names(spec: Spec, planned: Dict[str, List[str]]) -> None:
    """A trigger on check.NAME when the report comes from --run: NAME must be one of the checks
    those sections run (a typo would never fire)."""
    import difflib

    if not spec.run:
        return
    names = [name for section in spec.run for name in planned.get(section, ())]
    for condition in spec.triggers:
        if condition.path[:1] == ("check",) and len(condition.path) > 1 and condition.path[1] not in names:
            close = difflib.get_close_matches(str(condition.path[1]), names, n=1)
            raise ConfigError("trigger %r: %s runs no check %r%s (it runs: %s)" % (
                condition.text, ", ".join(spec.run), condition.path[1], "; did you mean %s?" % close[0]
                if close else "", ", ".join(names) or "none"))


def _run_id() -> str:
    import uuid
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def plan(spec: Spec) -> List[Planned]:
    source = spec.source or ("run " + ", ".join(spec.run) if spec.run else "(a report: --from or --run)")
    planned = [Planned("triggers", NAME, "trigger", source, tuple(c.text for c in spec.triggers),
                       options="on_no_data=%s%s" % (spec.on_no_data, "" if spec.execute else " dry run"))]
    variables = {"run_id": "{run_id}", "reasons": "{reasons}", "report": "{report}"}
    for step in steps.plan(spec.steps, variables):
        planned.append(step._replace(needs=("triggers",) + step.needs))
    if spec.steps:
        planned.append(Planned("verify", NAME, "verify", ", ".join(spec.verify), (),
                               options="settle=%gs timeout=%gs interval=%gs" % (
                                   spec.settle, spec.verify_timeout, spec.verify_interval),
                               needs=tuple(p.name for p in planned)))
    return planned


def run(spec: Spec, ctx) -> Outcome:
    """Judge the report; then, with --execute and a trigger fired, hold the lock, run the
    steps, verify, and record the incident (a dry run is recorded too, marked)."""
    state_dir = ctx.state_dir or state.default_dir()
    held = None
    if spec.execute:  # one rollback at a time; a dry run changes nothing and needs no lock
        path = spec.lock or os.path.join(state_dir, "rollback.lock")
        try:
            if not spec.lock:
                fsio.private_dir(state_dir)
            held = state.lock(path)
        except state.LockHeld as exc:
            return Outcome([Result("lock", NAME, "lock", "error", "another rollback is running: %s" % exc,
                                   severity="critical", target=path)], {})
        except OSError as exc:
            return Outcome([Result("lock", NAME, "lock", "error", "cannot take the lock %s: %s" % (
                path, fsio.why(exc)), severity="critical", target=path)], {})
    try:
        return _run(spec, ctx, state_dir)
    finally:
        if held is not None:
            os.close(held)


class _Verdict(collections.namedtuple("_Verdict", "judged fired reasons said metrics")):
    """The triggers judged on a report: each one's account, those that fired, why (reasons),
    what could not be judged (said), and the run's metrics so far."""

    __slots__ = ()


def _run(spec: Spec, ctx, state_dir: str) -> Outcome:
    started, clock = time.time(), time.monotonic()
    ends = clock + spec.time_budget
    if ctx.deadline_s and ctx.deadline_s < spec.time_budget:
        ends = clock + ctx.deadline_s
    else:  # the time budget is what ends it
        ctx = ctx._replace(deadline_flag="time_budget", deadline_said="time_budget %gs" % spec.time_budget)
    report, report_path, problem = _source(spec, ctx, state_dir)
    if problem:
        return Outcome([Result("report", NAME, "report", "error", ctx.redact(problem), severity="critical",
                               target=spec.source or ", ".join(spec.run))], {})
    verdict = _triggered(spec, report, os.path.abspath(report_path), state_dir, ctx)
    settled = _nothing_to_do(spec, report, verdict)
    if settled is not None:
        return settled
    record = {"time": utc_timestamp(started), "epoch": round(started, 3), "host": socket.gethostname(),
              "run_id": _run_id(), "dry_run": not spec.execute, "forced": spec.force, "reasons": verdict.reasons,
              "triggers": verdict.judged, "report": verdict.metrics["report"], "steps": [], "verify": None,
              "time_budget_s": spec.time_budget,
              "incident_log": os.path.abspath(spec.incident_log or os.path.join(state_dir, "incidents.jsonl"))}
    if not spec.execute:
        would = ", ".join(step.name for step in spec.steps) or "no steps (none are configured)"
        message = "rollback needed: %s%s; dry run: --execute would run %s%s" % (
            verdict.reasons, verdict.said, would, ", then verify %s" % ", ".join(spec.verify) if spec.steps else "")
        results = [_trigger_result("fail", message, verdict.judged, spec)]
        return Outcome(results + _recorded(spec, record, "dry run", clock, ctx), verdict.metrics)
    blocked = _blocked(spec, record, verdict, started, clock, ctx)
    if blocked is not None:
        return blocked
    return _act(spec, record, verdict, ctx, ends, clock)


def _triggered(spec: Spec, report: Dict[str, Any], report_path: str, state_dir: str, ctx) -> _Verdict:
    """Each trigger judged on the report and the run history."""
    records, warnings = state.history(state_dir)
    facts = _facts(report, records)
    judged = [_judge(condition, facts, spec.on_no_data, ctx.redact) for condition in spec.triggers]
    fired = [one for one in judged if one["fired"]]
    reasons = "; ".join(one["reason"] for one in fired)
    metrics: Dict[str, Any] = {"needed": bool(fired), "dry_run": not spec.execute, "reasons": reasons,
                               "triggers": judged, "report": report_path}
    if warnings:
        metrics["warnings"] = warnings
    said = "".join("; " + one["reason"] for one in judged if one["no_data"] and not one["fired"])
    return _Verdict(judged, fired, reasons, said, metrics)


def _nothing_to_do(spec: Spec, report: Dict[str, Any], verdict: _Verdict) -> Optional[Outcome]:
    """The outcome when no rollback is to be done: no trigger fired (or none could be judged),
    or the report itself could not check (nothing is known to be broken); else None."""
    judged, fired = verdict.judged, verdict.fired
    no_data = [one for one in judged if one["no_data"] and not one["fired"]]
    if not fired and (len(no_data) == len(judged) or any(one.get("error") for one in judged)):
        return Outcome([_trigger_result("error", "no trigger could be judged: " + verdict.said[2:] if len(
            no_data) == len(judged) else "no trigger fired, but not every one could be judged" + verdict.said,
            judged, spec)], verdict.metrics)
    if fired and report.get("status") == "error":  # smoke.py could not check: nothing is known to be broken
        return Outcome([_trigger_result("error", "fired: %s; but the report's verdict is error (it could not check "
                                        "everything, so nothing is known to be broken): not rolling back on it"
                                        % verdict.reasons, judged, spec)], verdict.metrics)
    if not fired:
        return Outcome([_trigger_result("pass", "no trigger fired: %s%s" % (
            "; ".join(one["reason"] for one in judged if not one["no_data"]), verdict.said), judged, spec)],
            verdict.metrics)
    return None


def _blocked(spec: Spec, record: Dict[str, Any], verdict: _Verdict, started: float, clock: float,
             ctx) -> Optional[Outcome]:
    """Why a rollback that fired must not act now, as its outcome; else None, once the line
    saying it started is written (never act without a record of it)."""
    incident_log, fired = record["incident_log"], "fired: " + verdict.reasons
    problem = incident.writable(incident_log, spec.rollback_log)
    if problem:
        return Outcome([_trigger_result("warn", fired, verdict.judged, spec),
                        Result("incident", NAME, "incident", "error", "not rolled back: " + problem,
                               severity="critical", target=incident_log)], verdict.metrics)
    last, last_outcome = incident.last_rollback(incident_log)
    if last is not None and started - last < spec.cooldown and not spec.force:
        message = "not rolled back: the last rollback (%s) was %s ago, within the cooldown of %s (until %s); " \
                  "--force overrides" % (last_outcome, incident.span(started - last), incident.span(spec.cooldown),
                                         utc_timestamp(last + spec.cooldown))
        results = [_trigger_result("warn", fired + verdict.said, verdict.judged, spec),
                   Result("cooldown", NAME, "cooldown", "fail", message, severity="critical", target=incident_log)]
        return Outcome(results + _recorded(spec, record, "blocked by cooldown", clock, ctx), verdict.metrics)
    try:  # a line before acting: a disk that fills up meanwhile cannot leave a rollback unrecorded
        incident.started(record, ctx.redact)
    except (OSError, ValueError) as exc:
        from checks import fsio
        return Outcome([_trigger_result("warn", fired, verdict.judged, spec),
                        Result("incident", NAME, "incident", "error", "not rolled back: cannot record the incident "
                               "in %s: %s" % (incident_log, fsio.why(exc)), severity="critical",
                               target=incident_log)], verdict.metrics)
    return None


def _act(spec: Spec, record: Dict[str, Any], verdict: _Verdict, ctx, ends: float, clock: float) -> Outcome:
    """Run the steps, then verify; the outcome recorded whatever ends it, a signal included."""
    metrics = verdict.metrics
    results = [_trigger_result("warn", "fired: " + verdict.reasons + verdict.said, verdict.judged, spec)]
    variables = {"run_id": record["run_id"], "reasons": verdict.reasons, "report": record["report"]}
    try:
        try:
            done, _ = steps.run(spec.steps, ctx, variables, ends=ends)
        except lifecycle.Interrupted as exc:
            record["steps"] = incident.steps(exc.results)
            raise exc.carrying(results + exc.results) from None
        results += done
        record["steps"] = incident.steps(done)
        lenient = {step.name for step in spec.steps if step.continue_on_error}  # its failure stops nothing
        broken = next((r for r in done if r.status not in ("pass", "warn") and r.name not in lenient), None)
        if broken is None:
            try:
                verified = _verify(spec, ctx, ends, metrics, record)
            except lifecycle.Interrupted as exc:
                raise exc.carrying(results + exc.results) from None
            outcome = "rolled back and verified" if verified.status == "pass" else "rolled back, verification failed"
            results.append(verified)
        else:
            results.append(Result("verify", NAME, "verify", "fail", "not rolled back: step %s %s, so nothing was "
                                  "verified" % (broken.name, "did not run" if broken.status == "skip" else "failed"),
                                  severity="critical"))
            outcome = "step %s %s" % (broken.name, "did not run" if broken.status == "skip" else "failed")
    except lifecycle.Interrupted as exc:  # the record is written before the signal is obeyed
        recorded, _ = lifecycle.shielded(lambda: _recorded(spec, record, "interrupted", clock, ctx))
        raise exc.carrying(exc.results + recorded, {NAME: dict(metrics, executed=True, outcome="interrupted")}) \
            from None
    took = time.monotonic() - clock
    if took > spec.time_budget:
        results.append(Result("time_budget", NAME, "time_budget", "fail", "the rollback took %s, over its "
                              "time_budget of %s" % (incident.span(took), incident.span(spec.time_budget)),
                              severity="critical"))
    metrics.update(executed=True, outcome=outcome, duration_s=round(took, 3))
    return Outcome(results + _recorded(spec, record, outcome, clock, ctx), metrics)


def _trigger_result(status: str, message: str, judged, spec: Spec) -> Result:
    return Result("triggers", NAME, "trigger", status, message, severity="critical",  # judged: in the metrics
                  target=spec.source or "run " + ", ".join(spec.run), expect=tuple(c.text for c in spec.triggers))


def _source(spec: Spec, ctx, state_dir: str) -> Tuple[Optional[Dict[str, Any]], str, Optional[str]]:
    """(the report, the path of its file, None) or (None, "", why it could not be had)."""
    if spec.run:
        report = ctx.run_sections(spec.run, ctx)
        path = os.path.join(state_dir, "last-report.json")
        for problem in _keep_copy(report, path, state_dir):
            return report, "", problem
        state.record_run(state_dir, report)  # the run judged is a run: the history's consecutive failures count it
        return report, path, None
    where = "stdin" if spec.source == "-" else spec.source
    data, problem = _read_report(spec.source, min(_STDIN_TIMEOUT_S, ctx.deadline_s or _STDIN_TIMEOUT_S))
    if problem:
        return None, "", "cannot read the report from %s: %s" % (where, problem)
    if not data.strip():
        return None, "", "the report in %s is empty" % where
    try:
        report = parse_json(data.decode("utf-8"), "--from " + where)
    except (ConfigError, UnicodeDecodeError) as exc:
        try:  # JSON, but with a key given twice: which of the two a trigger would judge is a guess (exit 2)
            json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as plain:
            hint = " (a --format text report? rollback reads the JSON one)" if data.lstrip()[:9] == b"smoke.py " else ""
            return None, "", "the report in %s is not JSON%s: %s" % (where, hint, cut(str(plain), 200))
        except RecursionError:
            return None, "", "the report in %s is nested too deep to be a smoke.py report" % where
        raise ConfigError(ctx.redact(str(exc)))
    if not isinstance(report, dict) or not isinstance(report.get("summary"), dict) \
            or not isinstance(report.get("results"), list):
        return None, "", "%s is not a smoke.py report (no summary and results)" % where
    from checks.model import reportable
    report = ctx.redact(reportable(report))  # NaN as text, lone surrogates replaced, secrets masked
    if spec.source != "-":
        return report, spec.source, None
    path = os.path.join(state_dir, "last-report.json")
    for problem in _keep_copy(report, path, state_dir):
        return None, "", problem
    return report, path, None


def _keep_copy(report: Dict[str, Any], path: str, state_dir: str) -> List[str]:
    """Write the judged report (masked) where {report} points the steps; the problem, if any."""
    from checks import sinks
    try:
        fsio.private_dir(state_dir)
    except OSError as exc:
        return ["cannot keep the report in %s: %s" % (state_dir, fsio.why(exc))]
    problem = sinks.write_output(path, json.dumps(report, indent=2) + "\n")
    return ["cannot keep the report: " + problem] if problem else []


TRUSTED_BECAUSE = "the report decides whether the rollback's steps run as you"


def _trusted(path: str) -> None:
    """--from FILE that another user could have written is exit 2 before anything runs: a
    report planted in /tmp would decide whether the steps run (checked again as it is read)."""
    from checks import fsio

    try:
        fd = fsio.open_steady(path)  # a link or a directory of another user's on the way chose the file
    except fsio.Refused as exc:
        raise ConfigError("--from: %s: not read: %s, and %s" % (path, fsio.why(exc).split(" (keep a state")[0],
                                                               TRUSTED_BECAUSE))
    except OSError:
        return  # said when it is read, as a report that cannot be read
    try:
        others = fsio.written_by_others(os.fstat(fd))
    finally:
        os.close(fd)
    if others:
        raise ConfigError("--from: %s: not read: it %s, and %s: read it, then copy it to a file of your own" % (
            path, others, TRUSTED_BECAUSE))


def _read_report(source: str, timeout: float = _STDIN_TIMEOUT_S) -> Tuple[bytes, Optional[str]]:
    """A report's bytes from a file, a FIFO or stdin (-), within a size cap and a deadline:
    a writer that never finishes cannot hang us. (bytes, None) or (b"", why not)."""
    from checks import fsio
    from checks.config import read_trusted
    try:
        data = fsio.read_bounded(0, MAX_REPORT, timeout) if source == "-" else read_trusted(
            source, MAX_REPORT, timeout, TRUSTED_BECAUSE)
    except ConfigError as exc:  # another user's file, judged as opened: changed since it was looked at
        return b"", str(exc)[len(source) + 2:]
    except IsADirectoryError:
        return b"", "is a directory"
    except OSError as exc:
        return b"", fsio.why(exc)
    if len(data) > MAX_REPORT:
        return b"", "larger than %d MB: not a smoke.py report" % (MAX_REPORT >> 20)
    return data, None


def _facts(report: Dict[str, Any], records: List[Dict[str, Any]]) -> Dict[str, Any]:
    """What a trigger can name: the summary's fields, the metrics (perf's the worst target's,
    each one also as perf.NAME.METRIC), check.NAME.status, and the consecutive failures."""
    facts: Dict[str, Any] = dict(report.get("summary") or {})
    facts.update(status=report.get("status"), exit_code=report.get("exit_code"), command=report.get("command"))
    metrics = report.get("metrics") if isinstance(report.get("metrics"), dict) else {}
    facts["metrics"] = metrics
    for section, numbers in metrics.items():
        if not isinstance(numbers, dict):
            continue
        targets = numbers.get("targets") if section == "perf" else None
        if isinstance(targets, dict):
            targets, facts["insufficient"] = _stand_ins(targets)
            facts["perf"] = targets
            for values in targets.values():
                for key, value in (values.items() if isinstance(values, dict) else ()):
                    if _number(value):
                        worse = min if key in _WORST_IS_LOWEST else max
                        facts[key] = worse(facts[key], value) if _number(facts.get(key)) else value
        else:
            for key, value in numbers.items():
                if _number(value) or isinstance(value, str):
                    facts.setdefault(key, value)
    from checks.history import interrupted

    prior = [r for r in records if not (r.get("time") == report.get("started_at")
                                        and r.get("command") == report.get("command"))
             and r.get("selection") == report.get("selection")  # an hourly run's streak is not a daily one's
             and not interrupted(r)]  # a run a signal stopped is no link of a streak
    failed = report.get("status") in ("fail", "error")
    facts["consecutive_failures"] = (1 + state.consecutive_failures(prior, report.get("command"))) if failed else 0
    checks = {}
    for result in report.get("results") or ():
        if not isinstance(result, dict) or not isinstance(result.get("name"), str):
            continue
        name, status = result["name"], result.get("status")
        streak = 1 + state.consecutive_failures(prior, check=name) if status in ("fail", "error") else 0
        checks[name] = {"status": status, "message": result.get("message"), "duration_ms": result.get("duration_ms"),
                        "facts": result.get("facts"), "consecutive_failures": streak}
    facts["check"] = checks
    return facts


def _stand_ins(targets: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, List[str]]]:
    """(perf's targets, each percentile it had too few samples for stood in by its max_ms; for
    each such percentile, the targets whose max_ms stands in). No percentile exceeds the slowest request, so a trigger such as
    p95_ms > 500 never passes over the slowest target because it ran 15 requests, not 20."""
    found: Dict[str, Any] = {}
    said: Dict[str, List[str]] = {}
    for name, values in targets.items():
        short = values.get("insufficient") if isinstance(values, dict) else None
        if not isinstance(short, dict) or not _number(values.get("max_ms")):
            found[name] = values
            continue
        own = dict(values)
        for key in short:
            if key.endswith("_ms") and not _number(own.get(key)):
                own[key] = values["max_ms"]
                said.setdefault(key, []).append(name)
        found[name] = own
    return found, said


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _judge(condition, facts: Dict[str, Any], on_no_data: str, redact) -> Dict[str, Any]:
    """One trigger: whether it fired, what was observed against what, or that there was no data."""
    seen = expect.observed(condition, facts)
    judged = {"condition": condition.text, "threshold": condition.raw, "op": condition.op}
    at = ("%s %s" % (condition.op, condition.raw)).strip()
    if (seen is expect.MISSING or seen is None) and condition.op not in ("exists", "!exists"):
        fired = on_no_data == "fire"
        why = " (the report does not have it)"
        if condition.path[:1] == ("check",) and len(condition.path) > 1 and condition.path[1] not in facts["check"]:
            import difflib
            close = difflib.get_close_matches(str(condition.path[1]), list(facts["check"]), n=1)
            why = ": the report has no check %r%s" % (condition.path[1], " (did you mean %s?)" % close[0]
                                                        if close else "")
        return dict(judged, observed=None, no_data=True, fired=fired,
                    reason=redact("%s: no data%s%s" % (condition.subject, why, " (on_no_data = fire)"
                                                       if fired else "")))
    from checks import CheckError
    try:
        fired = expect.unmet(condition, facts, time.monotonic() + _JUDGE_S, redact) is None
    except CheckError as exc:  # a pattern that ran past its time: this trigger is not known
        return dict(judged, observed=None, no_data=True, fired=False, error=str(exc),
                    reason=redact("%s: could not be judged: %s" % (condition.subject, exc)))
    if seen is expect.MISSING:  # exists / !exists on what is absent
        seen = None
    shown = seen if _number(seen) or isinstance(seen, str) else json.dumps(seen)[:80]
    text = cut(str(shown), 80)
    if fired:  # the line an on-call checklist greps for: p95_ms 612 > 500
        reason = "%s is %s" % (condition.subject, text) if condition.op == "==" else "%s %s %s %s" % (
            condition.subject, text, condition.op, condition.raw)
    else:
        reason = "%s %s (fires at %s)" % (condition.subject, text, at)
    short = (facts.get("insufficient") or {}).get(str(condition.path[-1])) or []
    if condition.path[0] == "perf":
        short = [name for name in short if len(condition.path) == 3 and condition.path[1] == name]
    if short and condition.path[0] in ("perf", condition.path[-1]):
        reason += " (too few samples in %s for %s: its max_ms stands in)" % (", ".join(short), condition.path[-1])
    return dict(judged, observed=redact(shown), no_data=False, fired=fired, reason=redact(reason))


def _verify(spec: Spec, ctx, ends: float, metrics, record) -> Result:
    """Re-run the verify sections after `settle`, until they pass or verify_timeout (or the
    time budget) runs out."""
    began = time.monotonic()
    time.sleep(max(0.0, min(spec.settle, ends - began)))
    until = min(time.monotonic() + spec.verify_timeout, ends)
    attempts, report = 0, None
    while True:
        attempts += 1
        left = max(0.001, until - time.monotonic()) if spec.verify_timeout else max(0.001, ends - time.monotonic())
        report = ctx.run_sections(spec.verify, ctx._replace(deadline_s=left))
        if report["status"] in PASSING or time.monotonic() + spec.verify_interval > until:
            break
        time.sleep(spec.verify_interval)
    took = time.monotonic() - began
    failing = [r for r in report["results"] if r.get("status") in ("fail", "error")]
    record["verify"] = {"status": report["status"], "attempts": attempts, "duration_s": round(took, 3),
                        "sections": list(spec.verify), "failing": [r["name"] for r in failing]}
    metrics["verify"] = record["verify"]
    facts = {"summary": report["summary"],
             "failing": [{"name": r["name"], "message": r.get("message")} for r in failing]}
    if report["status"] in PASSING:
        return Result("verify", NAME, "verify", "pass", "verified: %s passed on attempt %d, %s after the steps" % (
            ", ".join(spec.verify), attempts, incident.span(took)), severity="critical", facts=facts,
            duration_ms=took * 1000, attempts=attempts)
    first = failing[0] if failing else None
    why = "%s: %s" % (first["name"], first.get("message")) if first else "verdict %s" % report["status"]
    return Result("verify", NAME, "verify", "fail", "verification failed: %s still %s after %d attempt%s in %s "
                  "(%d of %d failing; %s)" % (", ".join(spec.verify), report["status"], attempts,
                                             "" if attempts == 1 else "s", incident.span(took), len(failing),
                                             report["summary"].get("total", 0), cut(why, 300)),
                  severity="critical", facts=facts, duration_ms=took * 1000, attempts=attempts)


def _recorded(spec: Spec, record: Dict[str, Any], outcome: str, clock: float, ctx) -> List[Result]:
    """The incident recorded with its outcome; a result saying where, or why not."""
    problems, logs = incident.record(record, outcome, time.monotonic() - clock, spec.time_budget, spec.rollback_log,
                                     spec.force, ctx.redact)
    if problems:
        return [Result("incident", NAME, "incident", "error", "; ".join(problems), severity="critical",
                       target=record["incident_log"])]
    return [Result("incident", NAME, "incident", "pass", "recorded in %s" % " and ".join(logs),
                   target=record["incident_log"])]


class Rollback(Command):
    NAME = NAME
    FLAGS = "--from FILE --trigger COND"
    EXAMPLES = """  python3 smoke.py health --url http://127.0.0.1:8080/health | \\
      python3 smoke.py rollback --from - --trigger 'pass_rate < 0.95'
  python3 smoke.py rollback --config smoke.json --run health            # a dry run: exit 1 when needed
  python3 smoke.py rollback --config smoke.json --run health --execute  # roll back, verify, record
"""
    ACTION = True  # `all` runs the checks a config describes; a rollback acts, and runs only when asked by name
    add_arguments = staticmethod(add_arguments)
    from_args = staticmethod(from_args)  # --trigger adds to the section's triggers, when there is a config

    def flags_describe(self, args) -> bool:
        """--from and --trigger judge a report with no config; steps (--execute) and sections
        (--run) are a config's, so only then is one found in the directory read."""
        return args.from_report is not None and bool(args.trigger) and not args.execute and not args.run
    load = staticmethod(load)
    plan = staticmethod(plan)
    run = staticmethod(run)
    uses = staticmethod(uses)
    check_names = staticmethod(check_names)


COMMAND = Rollback()
