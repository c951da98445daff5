#!/usr/bin/env python3
"""smoke.py: smoke tests after every deploy, from cron, CI or an incident shell.

    python smoke.py health --url http://127.0.0.1:8080/health --expect 'json.status == healthy'
    python smoke.py all --config smoke.json --format text

Prints a JSON report (schema smoke.report/1) and exits 0 pass, 1 fail, 2 usage or
config error, 3 could not evaluate, 130/143 interrupted. Standard library only.
"""

import os
import sys

# name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS = {
    "health": ("checks.health", "check HTTP endpoints, ports, commands, processes, containers, "
                                "resources, Prometheus queries, files and logs"),
    "all": (None, "run every section the config file has"),
}
# The config sections, in the order `all` runs them.
SECTIONS = tuple(name for name, (module, _) in COMMANDS.items() if module)

EXAMPLES = """examples:
  python smoke.py health --url http://127.0.0.1:8080/health --expect 'json.status == healthy'
  python smoke.py health --tcp 127.0.0.1:5432 --resources --format text
  python smoke.py all --config smoke.json --output /var/tmp/smoke.json --quiet

config: --config FILE, else $SMOKE_CONFIG, else ./smoke.toml or ./smoke.json
exit codes: 0 pass, 1 fail, 2 usage/config error, 3 could not evaluate, 130/143 interrupted"""


def _common_arguments(parser) -> None:
    from checks.config import bounded
    from checks.render import RENDERERS
    from checks.runner import DEFAULT_CONCURRENCY

    parser.add_argument("--config", metavar="FILE", help="JSON config (TOML on Python 3.11+)")
    out = parser.add_argument_group("output")
    out.add_argument("--format", choices=list(RENDERERS), default="json", help="report format (default json)")
    out.add_argument("--output", metavar="FILE", help="also write the JSON report here, atomically")
    out.add_argument("--quiet", action="store_true", help="print nothing unless something failed")
    run = parser.add_argument_group("selection and verdict")
    run.add_argument("--tag", action="append", default=[], metavar="TAG",
                     help="run only checks with this tag (repeatable)")
    run.add_argument("--skip-tag", action="append", default=[], metavar="TAG", help="skip checks with this tag")
    run.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this check (repeatable)")
    run.add_argument("--min-pass-rate", type=bounded(0, 1), default=1.0, metavar="RATE",
                     help="pass when at least this share of checks pass and every critical one does (default 1.0)")
    run.add_argument("--concurrency", type=bounded(1, integer=True), default=DEFAULT_CONCURRENCY, metavar="N",
                     help="checks at once (default %d)" % DEFAULT_CONCURRENCY)
    run.add_argument("--deadline", type=bounded(0.001), metavar="S", help="bound on the whole run, in seconds")
    mode = parser.add_argument_group("modes")
    mode.add_argument("--validate", action="store_true", help="check the configuration, run nothing")
    mode.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    mode.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")


def _parser(argv):
    import argparse

    def formatter(prog):
        # Given a width, argparse skips importing shutil just to ask for it: --help stays fast.
        try:
            width = int(os.environ.get("COLUMNS") or os.get_terminal_size(sys.stdout.fileno()).columns)
        except (ValueError, OSError):
            width = 80
        return argparse.RawDescriptionHelpFormatter(prog, width=max(40, width - 2))

    class Version(argparse.Action):
        """--version imports the package only when asked."""

        def __call__(self, parser, namespace, values, option_string=None):
            from checks import __version__
            print("smoke.py " + __version__)
            parser.exit()

    parser = argparse.ArgumentParser(prog="smoke.py", description=__doc__.split("\n\n")[0],
                                     epilog=EXAMPLES, formatter_class=formatter)
    parser.add_argument("--version", action=Version, nargs=0, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((arg for arg in argv if arg in COMMANDS), None)
    for name, (module_name, text) in COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text, epilog=EXAMPLES, formatter_class=formatter)
        if name == chosen:  # only the chosen command pays for its imports
            _common_arguments(sub)
            if module_name:
                _module(module_name).add_arguments(sub)
    return parser


def _module(name):
    import importlib
    return importlib.import_module(name)


def _gather(args, secrets):
    """Every configured and command-line check of the chosen command."""
    from checks import ConfigError, config

    adhoc = getattr(args, "adhoc", None)
    # Flags describe the checks; a config found implicitly would add unasked-for ones.
    path = args.config if adhoc else config.find(args.config)
    doc = config.load(path, secrets) if path else {}
    unknown = [key for key in doc if key not in SECTIONS and not key.startswith("_")]
    if unknown:
        raise ConfigError("%s: unknown section %r (known: %s)" % (path, unknown[0], ", ".join(SECTIONS)))
    sections = SECTIONS if args.command == "all" else (args.command,)
    checks = []
    for section in sections:
        if section in doc:
            checks += _module(COMMANDS[section][0]).load(doc[section], section)
    if adhoc:
        checks += _module(COMMANDS["health"][0]).from_args(args)
    if not checks and path:
        raise ConfigError("nothing to check: %s has no %s checks" % (path, " or ".join(sections)))
    if not checks:
        hint = "; or use --url, --tcp, --resources" if args.command == "health" else ""
        raise ConfigError("nothing to check: no config found (--config FILE, $SMOKE_CONFIG, ./smoke.toml, "
                          "./smoke.json)%s" % hint)
    return checks


def _run(args) -> int:
    import socket
    import time

    from checks import ConfigError, config, model, runner
    from checks.render import RENDERERS

    secrets = config.Secrets()
    try:
        checks = _gather(args, secrets)
        names = {check.name for check in checks}
        for name in args.only:
            if name not in names:
                raise ConfigError("--only %s: no such check (known: %s)" % (name, ", ".join(sorted(names))))
        if args.validate:
            print("config OK: %d checks" % len(checks), file=sys.stderr)
            return 0
        chosen, skipped = runner.select(checks, args.tag, args.skip_tag, args.only)
        if not chosen:
            raise ConfigError("the selection matched none of the %d checks" % len(checks))
        if args.dry_run:
            for check in chosen:
                print(secrets.redact("%-10s %-24s %s  [%s]" % (check.section, check.name, check.target,
                                                               ", ".join(c.text for c in check.expect))))
            return 0
        if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
            raise ConfigError("--output %s: the directory does not exist" % args.output)
    except ConfigError as exc:
        raise ConfigError(secrets.redact(str(exc)))

    progress = sys.stderr.isatty() and not args.quiet
    ctx = runner.RunContext(args.concurrency, args.deadline,
                            (lambda r: print(secrets.redact(_progress(r)), file=sys.stderr, flush=True))
                            if progress else None,
                            secrets.redact)
    started, clock = time.time(), time.monotonic()
    results = []
    runner.CLEANUP.open()
    with runner.Signals() as signals:
        try:
            try:
                for section in SECTIONS:
                    mine = [check for check in chosen if check.section == section]
                    if mine:
                        results += _module(COMMANDS[section][0]).run(mine, ctx)
            finally:
                signals.disarm()  # from here on a signal is recorded, and the report still written
        except runner.Interrupted as exc:
            results += exc.results
        for problem in runner.CLEANUP.run_all(close=signals.signum is not None):
            print("smoke.py: %s" % secrets.redact(problem), file=sys.stderr)
        report = model.build_report(args.command, results + skipped, socket.gethostname(), started,
                                    (time.monotonic() - clock) * 1000, args.min_pass_rate, signals.signum)
        report = secrets.redact(report)  # names and targets come from the config too
        code = report["exit_code"]
        if args.output and not _write_atomically(args.output, RENDERERS["json"](report)) and code == 0:
            code = int(model.ExitCode.UNKNOWN)  # a pass nobody can read is not a pass; a failure stays 1
        if not (args.quiet and code == 0):
            _emit(RENDERERS[args.format](report))
    return code


def _emit(text: str) -> None:
    """The report on stdout as UTF-8 whatever the locale; a closed pipe ends quietly."""
    try:
        if hasattr(sys.stdout, "buffer"):
            sys.stdout.flush()
            sys.stdout.buffer.write(text.encode("utf-8"))
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (smoke.py all | head): end quietly, as CPython's docs advise.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _progress(result) -> str:
    line = "%-5s %s (%.0f ms)" % (result.status.upper(), result.name, result.duration_ms)
    return line + (": " + result.message if result.message and result.status != "pass" else "")


def _write_atomically(path: str, text: str) -> bool:
    """Write beside the target, then rename: a reader never sees half a report."""
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".smoke-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        print("smoke.py: cannot write --output %s: %s" % (path, exc.strerror or exc), file=sys.stderr)
        return False
    return True


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(argv).parse_args(argv)
    from checks import SmokeError
    from checks.model import ExitCode

    try:
        return _run(args)
    except SmokeError as exc:
        print("smoke.py: error: %s" % exc, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # before any check ran: nothing to report or clean up
        print("smoke.py: interrupted", file=sys.stderr)
        return int(ExitCode.SIGINT)
    except Exception as exc:
        if args.debug:
            raise
        print("smoke.py: internal error: %s: %s (run with --debug for the traceback)"
              % (type(exc).__name__, exc), file=sys.stderr)
        return int(ExitCode.UNKNOWN)


if __name__ == "__main__":
    sys.exit(main())
