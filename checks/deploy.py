"""deploy: deploy → ready → predict → async predict → logs → cleanup, once per target.

Config section (every phase a step: see checks/steps.py):
    {"deploy": {"prefix": "smoke", "targets": [{"name": "us", "vars": {...}}], "concurrency": 4,
                "deploy": {...}, "ready": {..., "until": [...]}, "predict": {...},
                "predict_async": [{submit}, {poll, "until": [...]}, {fetch}],
                "logs": {..., "lines": ["Build succeeded"]}, "cleanup": {...}}}

Built-ins: {run_id}; {name}, the prefix + UTC time + a random suffix, unique per run and
target; {target}; each target's vars; {credentials_dir} when the target has credentials.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional

from checks import ConfigError, steps
from checks.command import Command
from checks.config import Fields, same_name
from checks.model import Outcome, Planned, cut

NAME = "deploy"
PHASES = ("deploy", "ready", "predict", "predict_async", "logs", "cleanup")
GATES = ("deploy", "ready")  # a phase after them stands on them, not on the others: a failed predict hides no logs
MAX_TARGETS = 1000


class Target(collections.namedtuple("Target", "name variables credentials credentials_as steps")):
    """One target of the matrix: its variables, its credential files, and its steps loaded for them."""

    __slots__ = ()


class Spec(collections.namedtuple("Spec", "targets concurrency keep_on_failure matrix")):
    __slots__ = ()


def add_arguments(parser) -> None:
    from checks.config import bounded
    from checks.model import MAX_TIMEOUT_S

    group = parser.add_argument_group("a model already deployed, without a config file")
    group.add_argument("--predict-url", metavar="URL", help="POST a prediction request here")
    group.add_argument("--json", metavar="BODY", help="the request's JSON body, e.g. '{\"prompt\":\"hi\",\"seed\":42}'")
    group.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                       help="a request header, e.g. 'Authorization: Bearer $TOKEN' (repeatable)")
    group.add_argument("--expect", action="append", default=[], metavar="COND",
                       help="a condition on the answer (default status < 400; repeatable)")
    group.add_argument("--repeat", type=bounded(1, steps.MAX_REPEAT, integer=True), default=1, metavar="N",
                       help="send it N times")
    group.add_argument("--identical", action="store_true", help="with --repeat: every answer must be the same")
    group.add_argument("--compare", metavar="PATH",
                       help="with --identical: the part of the answers compared, e.g. json.choices[0].text (default "
                            "json, else body: an answer with a fresh id or time each time is never identical)")
    group.add_argument("--timeout", type=bounded(0.001, MAX_TIMEOUT_S), default=30.0, metavar="S",
                       help="seconds per request (default 30)")
    parser.add_argument("--keep-on-failure", action="store_true",
                        help="after a failure, skip cleanup and leave what was deployed for inspection")


def from_args(args, secrets, configured: Optional[Spec] = None) -> Optional[Spec]:
    """A predict-only lifecycle from --predict-url (--concurrency N sends N at once), or the
    configured one with --keep-on-failure applied; None when no flag says anything."""
    if not args.predict_url:
        given = [flag for flag, value in (("--json", args.json), ("--header", args.header), ("--expect", args.expect),
                                          ("--repeat", args.repeat > 1), ("--identical", args.identical),
                                          ("--compare", args.compare)) if value]
        if given:  # they describe the request --predict-url sends: without one they would do nothing
            raise ConfigError("%s goes with --predict-url (a config's deploy section says this in its steps)"
                              % given[0])
        return configured._replace(keep_on_failure=True) if configured and args.keep_on_failure else None
    if args.identical and args.repeat < 2 and not (args.concurrency or 0) > 1:
        raise ConfigError("--identical compares answers: give --repeat N (2 or more) too")
    if args.compare is not None and not args.identical:
        raise ConfigError("--compare says what --identical compares: give --identical too")
    table = {"kind": "http", "url": args.predict_url, "method": "POST", "timeout": args.timeout,
             "expect": args.expect or ["status < 400"]}
    from checks.probes.http import header_flags
    headers = header_flags(args.header)
    if headers:
        table["headers"] = headers
    if args.json is not None:
        from checks.config import parse_json
        table["json"] = parse_json(args.json, "--json")
    if args.repeat > 1 or args.identical:
        table.update(repeat=args.repeat, identical=args.identical)
    if args.compare is not None:
        table["compare"] = args.compare
    if args.concurrency is not None:
        table["concurrency"] = args.concurrency
    from checks.secrets import collect_fields
    collect_fields(table, secrets)  # an Authorization header's value is a secret, as in a config
    section = {"predict": table}
    if configured is not None:
        raise ConfigError("--predict-url: give either a deploy section or --predict-url, not both")
    return load(section, "--predict-url", keep_on_failure=args.keep_on_failure)


def load(section, where: str = NAME, keep_on_failure: bool = False) -> Spec:
    fields = Fields(section, where)
    prefix = fields.text("prefix", "smoke")
    concurrency = fields.integer("concurrency", 4, 1, MAX_TARGETS)
    keep = fields.flag("keep_on_failure", False) or keep_on_failure
    targets = _targets(fields)
    phases = {phase: fields.get(phase, (dict, list), None) for phase in PHASES}
    fields.done()
    if not any(phases.values()):
        raise ConfigError("%s: no phase to run (give some of: %s)" % (where, ", ".join(PHASES)))
    deploys = phases["deploy"] if isinstance(phases["deploy"], list) else [phases["deploy"]] * bool(phases["deploy"])
    for i, one in enumerate(deploys):
        if isinstance(one, dict) and one.get("retries"):  # each attempt would create one more
            raise ConfigError("%s.deploy%s.retries: a retried deploy creates one thing per attempt and cleans up "
                              "only the last; retry in ready (until) instead"
                              % (where, "[%d]" % i if isinstance(phases["deploy"], list) else ""))
    if not phases["cleanup"] and any(not (isinstance(one, dict) and one.get("kind") == "spawn") for one in deploys):
        raise ConfigError("%s.cleanup: required: a deploy that creates something must say how to remove it "
                          "(a spawned process is stopped by the run itself)" % where)
    run_id = _run_id()
    loaded = []
    for target_name, variables, credentials, credentials_as in targets:
        builtins = dict(variables, run_id=run_id, target=target_name, name=_unique_name(prefix))
        if credentials:
            builtins["credentials_dir"] = "/nonexistent"  # made at run time
        known = set(builtins) | {"index"}
        target_steps: List[steps.Step] = []
        gates: List[str] = []  # deploy and ready: everything after stands on them
        taken: Dict[str, str] = {}  # a name (as same_name sees it): where it was given
        for phase in PHASES:
            table = phases[phase]
            if table is None:
                continue
            tables = table if isinstance(table, list) else [table]
            own: List[str] = []  # a phase's own steps are a sequence
            for i, one in enumerate(tables):
                at = "%s.%s" % (where, phase) + ("[%d]" % i if isinstance(table, list) else "")
                name = phase if not isinstance(table, list) else "%s.%s" % (phase, _step_name(one, i))
                if same_name(name) in taken:  # --only and the report know a step by its name
                    raise ConfigError("%s.name: %r is taken (by %s): give each step its own name (one without "
                                      "a name is named by its place, %s.%d)" % (at, name, taken[same_name(name)],
                                                                               phase, i + 1))
                taken[same_name(name)] = at
                one = _with_lines(one, at) if phase == "logs" else one
                if phase == "cleanup" and isinstance(one, dict):
                    one = dict({"always": True, "retries": 2}, **one)
                if phase in ("deploy", "cleanup") and isinstance(one, dict) and one.get("kind") == "command":
                    one = dict({"leave_running": True}, **one)  # it changes the system: what it starts stays
                step = steps.load(one, at, NAME, name, known, builtins)
                providers = [s.name for s in target_steps if set(s.captures) & step.needs]
                target_steps.append(step._replace(after=frozenset(gates + own + providers)))
                own.append(name)
            if phase in GATES:
                gates += own
        loaded.append(Target(target_name, builtins, credentials, credentials_as, target_steps))
    return Spec(loaded, concurrency, keep, len(targets) > 1 or bool(targets[0][0]))


def _step_name(table, i: int) -> str:
    return str(table.get("name")) if isinstance(table, dict) and table.get("name") else str(i + 1)


def _with_lines(table, where: str):
    """logs' `lines`: poll until every line has appeared in the text (body or stdout)."""
    if not isinstance(table, dict) or "lines" not in table:
        return table
    table = dict(table)
    lines = Fields(table, where).strings("lines")
    del table["lines"]
    text = "body" if table.get("kind") == "http" else "stdout"
    table["until"] = list(table.get("until", [])) + ["%s contains %s" % (text, json.dumps(line)) for line in lines]
    return table


def _targets(fields: Fields):
    """[(name, vars, credential files, how they are exposed)]: inline, a JSON file, or a URL.
    The section's `credentials`, keyed by target name, are joined to them: targets fetched
    from where credentials cannot be (a file, a URL) still get theirs from the config."""
    given = fields.get("targets", (list, str), None)
    joined = fields.get("credentials", (dict,), None)
    shared_as = fields.text("credentials_as", "HOME")
    if given is None:
        if joined is not None:
            raise ConfigError("%s: credentials are kept per target: give targets" % fields.at("credentials"))
        return [("", {}, {}, "HOME")]
    where = fields.at("targets")
    from_file = given if isinstance(given, str) else None
    if from_file:
        given = _fetch_targets(given, where)
    if not isinstance(given, list) or not given or len(given) > MAX_TARGETS:
        raise ConfigError("%s: expected a list of 1 to %d targets" % (where, MAX_TARGETS))
    found, names = [], set()
    for i, table in enumerate(given):
        target = Fields(table, "%s[%d]" % (where, i))
        name = target.text("name")
        if not name or "/" in name:
            raise ConfigError("%s: a target's name is not empty and has no / (results are named NAME/PHASE)"
                              % target.at("name"))
        if same_name(name) in names:
            raise ConfigError("%s: %r is used twice; names must be unique" % (target.at("name"), name))
        names.add(same_name(name))
        variables = target.get("vars", (dict,), {})
        credentials = target.get("credentials", (dict,), {})
        if credentials and from_file:  # a file's text is neither interpolated nor registered as secret
            raise ConfigError("%s: credentials belong inline in the config, where ${VAR} fills them and "
                              "they are masked; not in %s (key them by target name in %s)"
                              % (target.at("credentials"), from_file, fields.at("credentials")))
        at = target.at("credentials")
        if joined is not None:
            credentials, at = _joined(joined, name, credentials, fields.at("credentials"), target.at("credentials"))
        for file_name, content in credentials.items():
            if not isinstance(content, str) or "/" in file_name or file_name in ("", ".", ".."):
                raise ConfigError("%s.%s: a file name (no /) and its text" % (at, file_name))
        credentials_as = target.text("credentials_as", shared_as)
        target.done()
        found.append((name, variables, credentials, credentials_as))
    return found


def _joined(joined: Dict[str, Any], name: str, own: Dict[str, Any], where: str, own_where: str):
    """(the target's credential files from the section's table, where they are written)."""
    import difflib

    if own:
        raise ConfigError("%s: %r has credentials of its own and in %s: give them once" % (own_where, name, where))
    by_name = {same_name(key): key for key in joined}
    if same_name(name) not in by_name:
        close = difflib.get_close_matches(name, list(joined), n=1)
        raise ConfigError("%s: no credentials for target %r%s (known: %s)" % (
            where, name, " (did you mean %r?)" % close[0] if close else "", ", ".join(sorted(joined)) or "none"))
    key = by_name[same_name(name)]
    files = joined[key]
    if not isinstance(files, dict):
        raise ConfigError("%s.%s: expected a table of file names and their text" % (where, key))
    return files, "%s.%s" % (where, key)


def _fetch_targets(source: str, where: str):
    """A targets list from a JSON file, or from a URL fetched now (before anything is deployed)."""
    from checks.config import MAX_CONFIG_BYTES, parse_json, read_trusted
    if source.startswith(("http://", "https://")):  # within 30 s and what is left of --deadline
        from checks import CheckError
        from checks.config import loading_left
        from checks.probes import http
        _trusted_url(source, where)
        timeout = loading_left(FETCH_TIMEOUT_S)
        answer = http.fetch(http.Request(source, follow_redirects=False, max_body=MAX_CONFIG_BYTES), timeout)
        if answer.get("status") in (301, 302, 303, 307, 308):
            raise CheckError("%s: %s answered %s, to %s: a targets URL is never followed elsewhere (whoever answers "
                             "there would choose what runs); give the URL it moved to" % (
                                 where, source, answer["status"],
                                 cut(str(answer.get("headers", {}).get("location", "?")), 200)))
        if answer.get("status") != 200 or answer.get("error"):  # the inventory's trouble: nothing could be judged
            raise CheckError("%s: cannot fetch the targets from %s: %s" % (
                where, source, answer.get("error") or "status %s" % answer.get("status")))
        return parse_json(answer.get("body") or "", "%s: %s" % (where, source))  # a key twice is exit 2 here too
    from checks import fsio
    try:  # its vars fill the steps' commands: refused where another user could have written it
        data = read_trusted(source, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError("%s: cannot read %s: %s" % (where, source, fsio.why(exc)))
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (where, exc))
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError("%s: %s is over %d MiB" % (where, source, MAX_CONFIG_BYTES >> 20))
    try:
        return parse_json(data.decode("utf-8-sig"), "%s: %s" % (where, source))
    except UnicodeDecodeError as exc:
        raise ConfigError("%s: %s is not UTF-8 (byte %d)" % (where, source, exc.start))


FETCH_TIMEOUT_S = 30.0  # a targets URL's answer, at most


def _trusted_url(source: str, where: str) -> None:
    """A targets URL's vars fill the steps' commands, so it is https (the certificate verified),
    or http to this host alone: plain http elsewhere lets anyone on the path choose what runs."""
    import ipaddress
    from urllib.parse import urlsplit

    if source.startswith("https://"):
        return
    host = urlsplit(source).hostname or ""
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if not local:
        raise ConfigError("%s: %s is plain http to another host: its vars fill the steps' commands, and anyone on "
                          "the way could change them; give an https URL" % (where, source))
    from checks import procfs
    port = urlsplit(source).port or 80
    # the listeners a connection there may reach: the address (0:0::1 is ::1), its family's wildcard,
    # and for IPv4 a dual-stack :: and the mapped form
    addresses = ["127.0.0.1", "::1"] if host == "localhost" else [str(ipaddress.ip_address(host))]
    reached = {"::"} | {form for address in addresses for form in ((address,) if ":" in address else
                                                                  (address, "0.0.0.0", "::ffff:" + address))}
    try:
        owners = {uid for bound, listening, _, uid in procfs.listeners() if listening == port and bound in reached}
    except OSError:  # no /proc/net/tcp to tell: this host's own port, as before
        return
    strangers = owners - {0, os.geteuid()}  # any local user may listen on a free port above 1023
    if strangers:
        raise ConfigError("%s: %s may be answered by user %d's listener, not yours or root's: its vars would fill "
                          "the steps' commands" % (where, source, min(strangers)))


def _run_id() -> str:
    import uuid
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _unique_name(prefix: str) -> str:
    """prefix-UTC time-random: unique per run and target, sortable, valid in most platforms' names."""
    import uuid
    return "%s-%s-%s" % (prefix, time.strftime("%Y%m%d%H%M%S", time.gmtime()), uuid.uuid4().hex[:6])


def plan(spec: Spec) -> List[Planned]:
    return [step for target in spec.targets
            for step in steps.plan(target.steps, target.variables, _prefix(spec, target))]


def _prefix(spec: Spec, target: Target) -> str:
    return target.name + "/" if spec.matrix else ""


def run(spec: Spec, ctx) -> Outcome:
    """Each target's lifecycle; up to spec.concurrency targets at once."""
    chosen = [target for target in spec.targets if ctx.chosen is None
              or any(_prefix(spec, target) + step.name in ctx.chosen for step in target.steps)]
    outcomes: Dict[str, Any] = {}
    ends = time.monotonic() + ctx.deadline_s if ctx.deadline_s else None  # one deadline for every target
    if len(chosen) == 1 or spec.concurrency == 1:
        for target in chosen:
            outcomes[target.name] = _run_target(spec, target, ctx, ends)
    else:
        _run_concurrently(spec, chosen, ctx, outcomes, ends)
    results = [r for target in chosen for r in outcomes[target.name][0]]
    metrics = {target.name or "default": outcomes[target.name][1] for target in chosen}
    undone = {_prefix(spec, target) + step.name for target in chosen for step in target.steps if step.always}
    left = ["%s: %s" % (r.name, r.message) for r in results if r.status in ("fail", "error") and
            (r.name in undone or r.kind == "spawn" and "left behind" in r.message)]  # what the run leaves behind
    return Outcome(results, {"targets": metrics}, left)


def _run_concurrently(spec: Spec, targets: List[Target], ctx, outcomes: Dict[str, Any],
                      ends: Optional[float]) -> None:
    """Targets in threads; a signal in the main thread cancels them, and each still cleans up.
    As many at once as spec.concurrency, this process's descriptors (ulimit -n) and the threads
    this host gives allow; with no thread at all, one after another here.

    The main thread waits on an Event, not Thread.join: a signal that interrupts join()
    can leave it believing a thread that is still cleaning up has ended (CPython 3.11).
    """
    from checks import CheckError, lifecycle, runner
    from checks.lifecycle import Interrupted

    cancel = threading.Event()
    ctx = ctx._replace(cancel=cancel)
    pending = list(targets)
    lock, all_done = threading.Lock(), threading.Event()
    running = [0]

    def work():
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    target = pending.pop(0)
                outcomes[target.name] = _run_target(spec, target, ctx, ends)
        finally:
            with lock:
                running[0] -= 1
                if not running[0]:
                    all_done.set()

    for _ in range(runner.fd_limited(min(spec.concurrency, len(targets)))[0]):
        with lock:
            running[0] += 1
        try:
            lifecycle.start_thread(work, "smoke-target")
        except CheckError:
            with lock:
                running[0] -= 1
            break
    if not running[0]:
        running[0] = 1
        work()
    interrupted = None
    while not all_done.is_set():
        try:
            all_done.wait(0.2)
        except Interrupted as exc:  # every target stops at its next step and cleans up; later signals wait too
            cancel.set()
            interrupted = interrupted or exc
    if interrupted:
        raise interrupted.carrying([r for target in targets if target.name in outcomes
                                    for r in outcomes[target.name][0]]) from None


def _run_target(spec: Spec, target: Target, ctx, ends: Optional[float]):
    """(results, metrics) of one target's lifecycle, its credential directory removed after."""
    variables, private = dict(target.variables), None
    target_steps = target.steps
    if target.credentials:
        private = _credentials_dir(target, ctx)
        variables["credentials_dir"] = private
        target_steps = [_with_env(step, target.credentials_as, private) for step in target_steps]
    prefix = _prefix(spec, target)
    if ctx.chosen is not None:
        target_steps = [step for step in target_steps if prefix + step.name in ctx.chosen]
    started = time.monotonic()
    try:
        results, variables = steps.run(target_steps, ctx, variables, prefix, spec.keep_on_failure, ends)
    finally:
        if private:
            from checks import lifecycle
            shutil.rmtree(private, ignore_errors=True)
            lifecycle.release_dir(private)
    metrics = {"phases_ms": {r.name[len(prefix):]: round(r.duration_ms, 1) for r in results if r.status != "skip"},
               "status": "pass" if all(r.status in ("pass", "warn", "skip") for r in results) else "fail",
               "total_ms": round((time.monotonic() - started) * 1000, 1)}
    return results, metrics


def _credentials_dir(target: Target, ctx) -> str:
    """A private directory (0700) with the target's credential files (0600), removed at the end,
    and by the run's cleanup if we are interrupted first."""
    import tempfile

    from checks import fsio

    from checks import lifecycle

    private = tempfile.mkdtemp(prefix="smoke-credentials-")
    lifecycle.own_dir(private)  # removed even after kill -9 of smoke.py

    def remove() -> None:
        shutil.rmtree(private, ignore_errors=True)
        lifecycle.release_dir(private)

    if ctx.cleanup is not None:
        ctx.cleanup.add(remove, "credentials directory " + private)
    for file_name, content in target.credentials.items():
        fsio.create(os.path.join(private, file_name), content.encode("utf-8"), 0o600)
    return private


def _with_env(step, name: str, private: str):
    """A command or spawn step sees the credential directory as HOME (or the named variable)."""
    if step.table.get("kind") not in ("command", "spawn"):
        return step
    env = dict(step.table.get("env") or {})
    env.setdefault(name, private)
    return step._replace(table=dict(step.table, env=env))


class Deploy(Command):
    NAME = NAME
    FLAGS = "--predict-url"
    EXAMPLES = """  python3 smoke.py deploy --config deploy.json --format text
  python3 smoke.py deploy --predict-url http://127.0.0.1:8000/v1/completions \\
      --json '{"prompt": "hi", "seed": 42}' --expect 'status == 200' --repeat 3 --identical \\
      --compare 'json.choices[0].text'
  python3 smoke.py deploy --config deploy.json --only predict --keep-on-failure
"""
    add_arguments = staticmethod(add_arguments)
    from_args = staticmethod(from_args)
    load = staticmethod(load)
    plan = staticmethod(plan)
    run = staticmethod(run)

    def flags_describe(self, args) -> bool:
        return bool(args.predict_url)


COMMAND = Deploy()
