"""The command line's run half: everything after the arguments are parsed.

smoke.py keeps what --help needs (the command table, the flags, the exit codes);
this module is imported only to run, so its code is compiled once and cached, while
smoke.py, a script, is compiled again on every start. Unlike the rest of checks/,
it prints: the report on stdout, humans' lines on stderr, and neither a closed,
full nor hung-up stream ever changes the exit code.
"""

import os
import sys

_STDOUT_TIMEOUT_S = 60.0  # for a reader of our stdout to take the report


def _module(name):
    __import__(name)  # not importlib.import_module: importing importlib costs a one-check run
    return sys.modules[name]


def add_arguments(parser, deadline_help=None) -> None:
    """The flags every command has (output, selection, verdict, modes). deadline_help: a
    command whose own deadline --deadline sets (heartbeat's detection deadline) says so."""
    from checks.config import bounded
    from checks.render import RENDERERS
    from checks.runner import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, MAX_DEADLINE_S

    parser.add_argument("--config", metavar="FILE", help="JSON config (TOML on Python 3.11+)")
    out = parser.add_argument_group("output")
    out.add_argument("--format", choices=list(RENDERERS), default="json", help="report format (default json)")
    out.add_argument("--output", metavar="FILE", help="also write the JSON report here (atomically, for a file)")
    out.add_argument("--junit", metavar="FILE", help="also write JUnit XML here (for CI readers)")
    out.add_argument("--prom", metavar="FILE", help="also write the Prometheus text format here (node_exporter's "
                                                    "textfile collector: a FILE.prom in its directory)")
    out.add_argument("--tap", metavar="FILE", help="also write TAP version 13 here")
    out.add_argument("--instance", metavar="NAME", help="the Pushgateway group's instance (default: this host's "
                                                        "name; give a stable one where hosts come and go, as pods)")
    out.add_argument("--push", metavar="URL", help="PUT the Prometheus metrics to this Pushgateway, as "
                                                   "URL/metrics/job/smoke/instance/HOST")
    out.add_argument("--exit-codes", choices=("smoke", "nagios"), default=None,
                     help="smoke (default): 0 pass 1 fail 2 config 3 error; nagios: 0 OK 1 WARNING 2 CRITICAL "
                          "3 UNKNOWN (a config error too); implied by --format nagios")
    out.add_argument("--quiet", action="store_true", help="print nothing when the verdict is pass")
    out.add_argument("--secret", action="append", default=[], metavar="NAME",
                     help="mask the value of environment variable NAME everywhere (repeatable)")
    out.add_argument("--state-dir", metavar="DIR",
                     help="where runs keep their history (history.jsonl) and rollback its lock and incidents "
                          "(default: the config's state_dir, else ./data/smoke/state)")
    run = parser.add_argument_group("selection and verdict")
    run.add_argument("--tag", action="append", default=[], metavar="TAG",
                     help="run only checks with this tag (repeatable)")
    run.add_argument("--skip-tag", action="append", default=[], metavar="TAG", help="skip checks with this tag")
    run.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this check (repeatable)")
    run.add_argument("--min-pass-rate", type=bounded(0, 1), metavar="RATE",
                     help="pass when at least this share of checks pass and every critical one does "
                          "(default: the config's min_pass_rate, else 1.0)")
    run.add_argument("--concurrency", type=bounded(1, MAX_CONCURRENCY, integer=True), metavar="N",
                     help="checks (for deploy --predict-url: requests) at once (default %d)" % DEFAULT_CONCURRENCY)
    run.add_argument("--deadline", type=bounded(0.001, MAX_DEADLINE_S), metavar="S",
                     help=deadline_help or "bound on the whole run, in seconds")
    run.add_argument("--lock", metavar="FILE", help="hold an flock on FILE while running: a second run exits 3 "
                                                     "naming the holder (one left by kill -9 never blocks)")
    run.add_argument("--jitter", type=bounded(0, 3600), metavar="S",
                     help="wait a random 0 to S seconds first: spreads a fleet's cron runs")
    tell = parser.add_argument_group("notifications (from the run history: on a change, not every run)")
    tell.add_argument("--notify", metavar="URL", help="post to this Slack-compatible webhook when the verdict changes "
                                                    "and when a check has failed --escalate-after runs in a row")
    tell.add_argument("--notify-format", choices=("slack", "json"), default="slack",
                      help="slack (default): {text, attachments}; json: the report's summary")
    tell.add_argument("--escalate-after", type=bounded(1, 1000000, integer=True), metavar="N",
                      help="runs in a row a check fails before it is escalated (default: the config's "
                           "escalate_after, else 3)")
    tell.add_argument("--notify-github", metavar="OWNER/REPO",
                      help="an issue per failing check, commented while it fails and closed when it recovers "
                           "(token: $GITHUB_TOKEN)")
    tell.add_argument("--github-api", metavar="URL", help="GitHub's API (default $GITHUB_API_URL, else "
                                                          "https://api.github.com; GitHub Enterprise: its /api/v3)")
    tell.add_argument("--ping", metavar="URL", help="healthchecks.io style: URL/start first, then URL on pass or "
                                                    "URL/fail")
    mode = parser.add_argument_group("modes")
    mode.add_argument("--validate", action="store_true", help="check the configuration, run nothing")
    mode.add_argument("--dry-run", action="store_true", help="print what would run, with each check's options")
    mode.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")


def did_you_mean(message: str, options) -> str:
    """A hint for one of argparse's errors: the close option, command or choice meant."""
    import difflib
    import re

    words = re.findall(r"invalid choice: '?([^' ]+)", message)
    choices = re.findall(r"[\w-]+", message.split("choose from", 1)[1]) if words and "choose from" in message else []
    if message.startswith("unrecognized arguments: "):
        words = [w.split("=", 1)[0] for w in message.split()[2:] if w.startswith("-")]
    for word in words:
        close = difflib.get_close_matches(word, choices or options, n=1)
        if close:
            return " (did you mean %s?)" % close[0]
    if "argument COMMAND: invalid choice" in message:  # smoke.py --config x.json: an option before the command
        return " (the command comes first, then its options: smoke.py health --config FILE)"
    return ""


def _gather(args, secrets, commands, sections):
    """{section: spec} for the chosen command, from the config and the command's own
    flags, and each section's min_pass_rate. Only the subcommand face is called here."""
    from checks import ConfigError, config

    own = _module(commands[args.command][0]) if args.command in sections else None
    args.secrets = secrets  # flags can carry secrets too (--header 'Authorization: ...')
    # Flags describe the checks, and a config found implicitly would add unasked-for ones; unless
    # the command's flags add to its section (rollback's --trigger), then the config is the base.
    additive = getattr(own, "FLAGS_ADD_TO_CONFIG", False)
    flagged = own.from_args(args) if own is not None and not additive else None  # the flags' own spec
    path = args.config if flagged is not None else config.find(args.config)
    try:  # every error names the file in use: the same field may exist in several
        doc = config.load(path, secrets) if path else {}
    except ConfigError as exc:
        raise exc if str(exc).startswith(path) else ConfigError("%s: %s" % (path, exc))
    chosen = sections if args.command == "all" else (args.command,)
    specs = {}
    try:
        rates = _pass_rates(doc, sections)
        unknown = [key for key in doc if key not in sections + _TOP_LEVEL and not key.startswith("_")]
        if unknown:
            raise ConfigError("unknown section %r (known: %s)" % (unknown[0], ", ".join(sections)))
        for section in chosen:
            if section in doc:
                module = _module(commands[section][0])
                if args.command == "all" and getattr(module, "ACTION", False):
                    continue  # all runs the checks; an action (rollback) runs when asked by name
                specs[section] = module.load(_section_table(doc[section]), section)
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (path, exc))
    if own is not None:  # the flags' checks, or the configured spec as flags change it
        given = own.from_args(args, specs[args.command]) if args.command in specs else \
            own.from_args(args) if additive else flagged
        if given is not None:
            specs[args.command] = given
    used = {}  # sections another one runs (rollback's --run and verify), loaded and checked now
    uses = getattr(own, "uses", None)
    for section in (uses(specs[args.command]) if uses and args.command in specs else ()):
        where = "%s: %s" % (path, args.command) if path else args.command
        if section not in sections or section == args.command:
            raise ConfigError("%s: %r is not a section it can run (known: %s)" % (
                where, section, ", ".join(s for s in sections if s != args.command)))
        if section not in doc:
            raise ConfigError("%s: runs the %s section, which the config does not have" % (where, section))
        try:
            used[section] = _module(commands[section][0]).load(_section_table(doc[section]), section)
        except ConfigError as exc:
            raise ConfigError("%s: %s" % (path, exc))
    if used and hasattr(own, "check_names"):  # its conditions on check.NAME, against what those sections run
        try:
            own.check_names(specs[args.command], {section: [step.name for step in _module(
                commands[section][0]).plan(spec)] for section, spec in used.items()})
        except ConfigError as exc:
            raise ConfigError("%s: %s" % (path, exc) if path else str(exc))
    plans = {section: _module(commands[section][0]).plan(spec) for section, spec in specs.items()}
    if not any(plans.values()) and path:
        raise ConfigError("nothing to check: %s has no %s checks" % (path, " or ".join(chosen)))
    if not any(plans.values()):
        hint = "; or use %s" % own.FLAGS if own is not None and getattr(own, "FLAGS", None) else ""
        raise ConfigError("nothing to check: no config found (--config FILE, $SMOKE_CONFIG, ./smoke.toml, "
                          "./smoke.json)%s" % hint)
    return specs, plans, rates, used, _state(doc, args, path)


_TOP_LEVEL = ("min_pass_rate", "state_dir", "history_limit", "escalate_after")  # keys that are not sections


def _section_table(table):
    """A section as its module loads it: min_pass_rate is the verdict's, read by _pass_rates."""
    return {key: value for key, value in table.items() if key != "min_pass_rate"} if isinstance(table, dict) else table


def _state(doc, args, path):
    """(state directory, history limit, escalate_after): the flags, else the config's, else the defaults."""
    from checks import ConfigError, state
    from checks.config import Fields

    try:
        top = Fields(doc, "")
        directory = args.state_dir or top.path("state_dir", None) or state.DEFAULT_DIR
        limit = top.integer("history_limit", state.DEFAULT_LIMIT, 1, state.MAX_LIMIT)
        escalate = args.escalate_after or top.integer("escalate_after", state.DEFAULT_ESCALATE_AFTER, 1, 1000000)
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (path, exc) if path else str(exc))
    if args.state_dir is not None and not args.state_dir.strip():
        raise ConfigError("--state-dir: give a directory")
    return directory, limit, escalate


def _check_notifications(args, secrets) -> None:
    """Refuse, before anything runs, a notification that could not be sent; their URLs and
    the token are secrets (a webhook's URL is its credential)."""
    import re

    from checks import ConfigError

    wanted = [(flag, url) for flag, url in (("--notify", args.notify), ("--ping", args.ping), ("--push", args.push))
              if url is not None]
    if args.notify_github is not None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", args.notify_github):
            raise ConfigError("--notify-github %s: expected OWNER/REPO" % args.notify_github)
        if not os.environ.get("GITHUB_TOKEN"):
            raise ConfigError("--notify-github: set GITHUB_TOKEN to a token that may open issues in %s"
                              % args.notify_github)
        secrets.add(os.environ["GITHUB_TOKEN"])
        args.github_api = args.github_api or os.environ.get("GITHUB_API_URL") or "https://api.github.com"
        wanted.append(("--github-api", args.github_api))
    if wanted:
        from checks.probes import http
        for flag, url in wanted:
            http.check_url(http.ascii_url(url), flag)
            if flag in ("--notify", "--ping"):
                secrets.add(url)
                secrets.add(http.ascii_url(url))
            setattr(args, flag[2:].replace("-", "_"), http.ascii_url(url))  # sent as it was checked


def _pass_rates(doc, sections):
    """{section: min_pass_rate} from the config: a section's own, else the top level's."""
    from checks.config import Fields

    top = Fields(doc, "").number("min_pass_rate", None, 0, 1)
    rates = {}
    for section in sections:
        table = doc.get(section)
        own = Fields(table, section).number("min_pass_rate", None, 0, 1) if isinstance(table, dict) else None
        if own is not None or top is not None:
            rates[section] = own if own is not None else top
    return rates


def run(args, commands, closed) -> int:
    """Run the parsed command; its exit code.

    commands is smoke.COMMANDS ({name: (module, help)}): the sections, in the order
    `all` runs them, are its entries with a module. closed names the standard streams
    that were closed at start (smoke._open_stdio).
    """
    import socket
    import time

    from checks import ConfigError, lifecycle, model, runner
    from checks.render import RENDERERS, printable
    from checks.secrets import Secrets

    sections = tuple(name for name, (module, _) in commands.items() if module)
    secrets = Secrets(names=args.secret)
    try:
        for name in args.secret:
            if not os.environ.get(name):  # a misspelt name would leave the real variable unmasked
                raise ConfigError("--secret %s: environment variable %s is not set" % (name, name))
            secrets.add(os.environ[name])
        specs, plans, rates, used, (state_dir, history_limit, escalate) = _gather(args, secrets, commands, sections)
        _check_notifications(args, secrets)
        planned = [step for section in specs for step in plans[section]]
        names = {step.name for step in planned}
        for name in args.only:
            if name not in names:
                import difflib
                close = difflib.get_close_matches(name, names, n=1)
                raise ConfigError("--only %s: no such check%s (known: %s)" % (
                    name, "; did you mean %s?" % close[0] if close else "", ", ".join(sorted(names))))
        if args.validate:
            say("config OK: %d check%s" % (len(planned), "" if len(planned) == 1 else "s"))
            return 0
        chosen, skipped = runner.select(planned, args.tag, args.skip_tag, args.only)
        if not chosen:
            tags = sorted({tag for step in planned for tag in step.tags})
            raise ConfigError("the selection matched none of the %d checks (--only and --tag must both match; "
                              "tags: %s)" % (len(planned), ", ".join(tags) or "none"))
        if args.dry_run:
            _emit("".join(printable(secrets.redact(_planned(step))) + "\n" for step in chosen), "stdout" in closed)
            return 0
        given = {}
        for flag, path in _file_sinks(args):
            from checks import sinks
            sinks.check_output(path, flag)
            if os.path.realpath(path) in given and not path.startswith("/dev/"):
                raise ConfigError("%s %s: %s writes there too: give each report its own file"
                                  % (flag, path, given[os.path.realpath(path)]))
            given[os.path.realpath(path)] = flag
        if args.lock is not None and not args.lock.strip():
            raise ConfigError("--lock: give a file name")
        if args.instance is not None and not args.instance.strip():
            raise ConfigError("--instance: give a name")
        if args.lock:
            from checks import state
            try:  # before --jitter: a bad path is said now, and a run already going is found at once
                state.lock(args.lock)  # held until this process ends: the kernel lets it go, even after kill -9
            except OSError as exc:
                raise ConfigError("--lock %s: %s" % (args.lock, exc.strerror or exc))
    except ConfigError as exc:
        raise ConfigError(secrets.redact(str(exc)))
    if args.jitter:
        import random
        time.sleep(random.uniform(0, args.jitter))
    if args.notify or args.notify_github or args.ping or args.push:  # only then: a one-check run stays lean
        from checks import notify
    early = [notify.ping(args.ping, "start")] if args.ping else []  # the dead man's switch: this run began

    wanted = min(args.concurrency or runner.DEFAULT_CONCURRENCY, len(chosen))
    concurrency, limit = runner.fd_limited(wanted)
    if limit and not args.quiet:
        say("smoke.py: running %d check%s at a time, not %d: this process may open only %d files (ulimit -n)"
            % (concurrency, "" if concurrency == 1 else "s", wanted, limit))
    progress = _Progress(len(chosen), secrets.redact) if _terminal(sys.stderr) and not args.quiet else None
    if progress:  # what a command is about to do that a person at a terminal should know first
        for section, spec in specs.items():
            notice = getattr(_module(commands[section][0]), "notice", None)
            for line in (notice(spec) if notice else ()):
                say(secrets.redact(line))
    cleanup = lifecycle.Cleanup()
    own = _module(commands[args.command][0]) if args.command in sections else None
    # a command that takes --deadline as its own (heartbeat's detection deadline) gets it from from_args
    run_deadline = None if getattr(own, "DEADLINE_HELP", None) else args.deadline
    if run_deadline is None and args.tag and not getattr(own, "DEADLINE_HELP", None):  # a tier's own deadline
        tiers = [_module(commands[section][0]).deadline(spec, args.tag) for section, spec in specs.items()
                 if hasattr(_module(commands[section][0]), "deadline")]
        run_deadline = min([d for d in tiers if d is not None], default=None)
    deadline_flag = "--deadline" if args.deadline is not None or run_deadline is None else "the tier's deadline"
    min_rate = args.min_pass_rate if args.min_pass_rate is not None else 1.0
    section_rates = {} if args.min_pass_rate is not None else rates

    def run_sections(names, ctx):
        """The report of other sections run now, as `smoke.py SECTION` would make it (rollback's)."""
        began, clock = time.time(), time.monotonic()
        ran, numbers = [], {}
        inner = ctx._replace(chosen=None, on_result=None, on_progress=None)
        for name in names:
            outcome = _module(commands[name][0]).run(used[name], inner)
            ran += outcome.results
            if outcome.metrics:
                numbers[name] = outcome.metrics
        return secrets.redact(model.build_report(names[0] if len(names) == 1 else "+".join(names), ran,
                                                 socket.gethostname(), began, (time.monotonic() - clock) * 1000,
                                                 min_rate, None, section_rates, numbers))

    ctx = runner.RunContext(concurrency, run_deadline, progress, secrets.redact, cleanup,
                            on_progress=progress.status if progress else None, state_dir=state_dir,
                            run_sections=run_sections, deadline_flag=deadline_flag)
    started, clock = time.time(), time.monotonic()
    results, metrics = [], {}
    with lifecycle.Signals() as signals:
        try:
            try:
                for section, spec in specs.items():
                    mine = frozenset(step.name for step in chosen if step.section == section)
                    if mine:
                        outcome = _module(commands[section][0]).run(spec, ctx._replace(chosen=mine))
                        results += outcome.results
                        if outcome.metrics:
                            metrics[section] = outcome.metrics
            finally:
                signals.disarm()  # from here on a signal is recorded, and the report still written
        except lifecycle.Interrupted as exc:
            results += exc.results
            metrics.update(getattr(exc, "metrics", None) or {})  # run_dir, timings so far: for the post-mortem
        if progress:
            progress.clear()
        results += [model.Result("cleanup", args.command, "cleanup", "error", "left behind: %s (%s)" % left,
                                 severity="critical", target=left[0])
                    for left in cleanup.run_all(close=signals.signum is not None)]
        lifecycle.kill_orphans()
        problems = []
        report = model.build_report(args.command, results + skipped, socket.gethostname(), started,
                                    (time.monotonic() - clock) * 1000, min_rate, signals.signum,
                                    section_rates, metrics)
        report = secrets.redact(report)  # names and targets come from the config too
        chosen_by = {key: sorted(set(getattr(args, key))) for key in ("tag", "skip_tag", "only") if getattr(args, key)}
        if chosen_by:  # which checks this run was: the history keeps an hourly and a daily run apart
            report["selection"] = chosen_by
        # Decide, then deliver, then print: the printed report and the exit code always agree.
        from checks import state
        prior = state.history(state_dir)[0] if args.notify or args.notify_github else []
        problems += [problem for problem in early if problem]
        problems += state.record_run(state_dir, report, history_limit)  # never changes the verdict
        # what changed since the last run, told where people look; none of it changes the verdict
        summary = report["summary"]
        told = [("--notify", args.notify, lambda: notify.webhook(
                    args.notify, report, notify.events(report, prior, escalate), args.notify_format == "json")),
                ("--notify-github", args.notify_github, lambda: notify.github(
                    args.notify_github, report, prior, args.github_api, os.environ["GITHUB_TOKEN"])),
                ("--ping", args.ping, lambda: [notify.ping(
                    args.ping, "" if report["exit_code"] == 0 else "fail", "smoke.py %s on %s: %s, %d of %d passed"
                    % (args.command, report["host"], report["status"], summary["pass"] + summary["warn"],
                       summary["total"]))]),
                ("--push", args.push, lambda: [notify.push(
                    args.push, RENDERERS["prometheus"](report), args.instance or report["host"],
                    report.get("selection"))])]
        for flag, wanted, send in told:
            if wanted:
                try:  # a garbled answer from a webhook or GitHub must not cost the report
                    problems += [problem for problem in send() if problem]
                except Exception as exc:
                    problems.append("%s: %s: %s" % (flag, type(exc).__name__, exc))
        for flag, path in _file_sinks(args):  # --output last: its report has what the others could not do
            from checks import sinks
            if problems:
                report["problems"] = [model.reportable(secrets.redact(problem)) for problem in problems]
            problem = sinks.write_output(path, RENDERERS[_FILE_SINKS[flag]](report))
            if problem:
                problems.append("%s: %s" % (flag, problem))
                if report["exit_code"] == 0:  # a pass nobody can read is not a pass; a failure stays 1
                    report.update(status="error", exit_code=int(model.ExitCode.UNKNOWN))
        if signals.signum is not None and "interrupted" not in report:  # it came while the report was delivered
            name = model.SIGNAL_NAMES[signals.signum]
            report.update(status="error", interrupted=name, exit_code=int(model.ExitCode[name]))
        if nagios(args):
            report["exit_code"] = model.exit_code(report, "nagios")
        if problems:
            report["problems"] = [model.reportable(secrets.redact(problem)) for problem in problems]
            for problem in report["problems"]:  # --quiet: a line the history skipped is not worth a mail; a
                quiet = problem.startswith("history:") and ("cut short" in problem or "not a JSON" in problem)
                if not (args.quiet and report["exit_code"] == 0 and quiet):  # lost push or history is
                    say("smoke.py: " + problem)
        code, decided = report["exit_code"], signals.signum
        if not (args.quiet and code == 0):
            color = args.format == "text" and _terminal(sys.stdout) and not os.environ.get("NO_COLOR")
            _emit(RENDERERS[args.format](report, color=color), "stdout" in closed,
                  stop=lambda: decided is None and signals.signum is not None)
        if decided is None and signals.signum is not None:  # it came while the report was printed
            code = 3 if nagios(args) else int(model.ExitCode[model.SIGNAL_NAMES[signals.signum]])
    return code


_FILE_SINKS = {"--junit": "junit", "--prom": "prometheus", "--tap": "tap", "--output": "json"}


def _file_sinks(args):
    """[(flag, path)] of the reports to write to files, --output last."""
    return [(flag, getattr(args, flag[2:])) for flag in _FILE_SINKS if getattr(args, flag[2:]) is not None]


def nagios(args) -> bool:
    """Whether exit codes follow Nagios's convention: --exit-codes nagios, or --format nagios."""
    return args.exit_codes == "nagios" or (args.exit_codes is None and args.format == "nagios")


def nagios_argv(argv) -> bool:
    """The same, from the raw arguments, for errors found before they are parsed."""
    def named(flag):  # argparse takes any unambiguous prefix of a long option
        return lambda word: len(word) >= 4 and flag.startswith(word)
    pairs = list(zip(argv, argv[1:])) + [tuple(a.split("=", 1)) for a in argv if "=" in a]
    exit_codes = [value for key, value in pairs if named("--exit-codes")(key)]
    return exit_codes[-1:] == ["nagios"] or (not exit_codes and any(
        named("--format")(key) and value == "nagios" for key, value in pairs))


def _planned(step) -> str:
    """One --dry-run line: what runs, what is expected, and every option that applies to it."""
    return "%-10s %-24s %s  [%s]  %s" % (step.section, step.name, step.target, ", ".join(step.expect), step.options)


class _Progress:
    """One updating line on a terminal ([12/40] PASS api (19 ms)), cleared before the report."""

    def __init__(self, total: int, redact):
        self.total, self.done, self.shown, self.redact = total, 0, 0, redact
        try:
            self.width = (os.get_terminal_size(sys.stderr.fileno()).columns or 80) - 1  # a new pty says 0
        except (OSError, ValueError):
            self.width = 79

    def __call__(self, result) -> None:
        from checks.render import printable

        self.done += 1
        line = "[%d/%d] %-5s %s (%.0f ms)" % (self.done, self.total, result.status.upper(), result.name,
                                            result.duration_ms)
        if result.message and result.status != "pass":
            line += ": " + result.message
        line = printable(self.redact(line))[:max(10, self.width)]
        # Spaces over what is left of a longer line: no escape sequence, so TERM=dumb works too.
        _write_stderr("\r" + line + " " * max(0, self.shown - len(line)))
        self.shown = len(line)

    def status(self, text: str) -> None:
        """A line about the check under way (perf: elapsed, requests, rate)."""
        from checks.render import printable

        line = printable(self.redact(text))[:max(10, self.width)]
        _write_stderr("\r" + line + " " * max(0, self.shown - len(line)))
        self.shown = len(line)

    def clear(self) -> None:
        if self.shown:
            _write_stderr("\r" + " " * self.shown + "\r")


def _terminal(stream) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError, OSError):
        return False


def _write_stderr(text: str) -> None:
    """A closed, full or hung-up stderr never stops a run; what could not be said is lost."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def say(line: str) -> None:
    """Lines for humans on stderr, control characters escaped (messages quote outside bytes)."""
    from checks.render import printable
    _write_stderr("\n".join(printable(part) for part in line.split("\n")) + "\n")


def _emit(text: str, closed: bool = False, stop=lambda: False) -> None:
    """The report on stdout as UTF-8 whatever the locale; a closed pipe ends quietly.

    A stdout that cannot take it (closed, a full disk, a reader gone quiet for a minute)
    is said on stderr; the exit code is the verdict's either way.
    """
    if closed:
        say("smoke.py: stdout is closed: the report was not printed")
        return
    data = text.encode("utf-8", "replace")  # a lone surrogate from the environment must not lose the report
    try:
        sys.stdout.flush()
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, ValueError, OSError):  # not a real file (a test's capture)
            fd = None
        if fd is None and hasattr(sys.stdout, "buffer"):
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        elif fd is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            from checks import fsio
            fsio.write_all(fd, data, _STDOUT_TIMEOUT_S, stop)
    except BrokenPipeError:
        # The reader went away (smoke.py all | head): end quietly, as CPython's docs advise.
        park_stdout()
    except (OSError, ValueError) as exc:
        park_stdout()
        say("smoke.py: cannot print the report on stdout: %s" % (getattr(exc, "strerror", None) or exc))


def park_stdout() -> None:
    """Point fd 1 at /dev/null, so the interpreter's last flush of stdout cannot fail."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
