"""smoke.py's body: the command table, the parser and main -> exit code.

A module, so that Python compiles it once and keeps its code (__pycache__, or the single
file's cache), where smoke.py, a script, is compiled on every start: on Python 3.13 that
cost a one-check run from cron a fifth of its time. smoke.py keeps only what any Python
parses (its version check) and calls main() here. --help imports this and the package's
__init__, nothing else of ours.
"""

import os
import sys

# Not __doc__: under python -OO docstrings are gone, and --help must still work.
DESCRIPTION = "smoke.py: smoke tests after every deploy, from cron, CI or an incident shell."
# name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS = {
    "health": ("checks.health", "check HTTP endpoints, ports, commands, processes, containers, "
                                "resources, Prometheus queries, files and logs"),
    "deploy": ("checks.deploy", "deploy a model or service, wait until ready, predict (also async), find lines "
                                "in its logs, always clean up; once per target of a matrix"),
    "heartbeat": ("checks.heartbeat", "boot a coordinator and workers, kill a worker, and time how fast its "
                                      "failure is detected, against a deadline"),
    "perf": ("checks.perf", "latency percentiles, throughput and error rate under load, against thresholds"),
    "rollback": ("checks.rollback", "judge a report with triggers (by itself a dry run: exit 1 when a rollback is "
                                    "needed); with --execute roll back, verify and record the incident"),
    "all": (None, "run every section the config file has (rollback only when asked by name)"),
}
# Commands that run no check but read what runs left: no config section, none of the run flags. name ->
# (module, one-line help); the module has add_arguments(parser), EXAMPLES and main(args) -> exit code.
TOOLS = {
    "history": ("checks.history.command", "the run history check by check: last status, since when, streak, "
                                          "pass rate, flaky; as text, JSON or an HTML page"),
    "summary": ("checks.summary.command", "the fleet view of several hosts' reports: which hosts fail which checks, "
                                          "and perf loads spread over hosts merged into one"),
    "snapshot": ("checks.snapshot.command", "write the config that describes this host as it is now: its listening "
                                            "ports, processes, HTTP endpoints, containers, disks and memory"),
}

EXAMPLES = """examples:
  python3 smoke.py health --url http://127.0.0.1:8080/health --expect 'json.status == healthy'
  python3 smoke.py health --tcp 127.0.0.1:5432 --resources --format text
  python3 smoke.py deploy --config deploy.json --format text
  python3 smoke.py deploy --predict-url http://127.0.0.1:8000/v1/completions --json '{"prompt":"hi","seed":42}' \\
      --expect 'status == 200' --repeat 3 --identical --compare 'json.choices[0].text'
  python3 smoke.py heartbeat --pidfile /run/redis/redis-server.pid --log /var/log/redis/sentinel.log \\
      --failure-pattern '\\+sdown master (?P<worker>\\S+)' --expect-worker mymaster --deadline 5
  python3 smoke.py rollback --config smoke.json --run health --execute
  python3 smoke.py all --config smoke.json --output smoke-report.json --html smoke-report.html --quiet
  python3 smoke.py history --format text
  python3 smoke.py snapshot --output host.json && python3 smoke.py health --config host.json
  python3 smoke.py summary fetched/

""" + "\n"
FOOTER = """config: --config FILE, else $SMOKE_CONFIG, else ./smoke.toml or ./smoke.json
exit codes: 0 pass, 1 fail, 2 usage/config error, 3 could not evaluate, 129/130/143 interrupted
  (--exit-codes nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
manual: docs/ beside smoke.py in its repository (README.md says where each thing is)"""


def _parser(argv):
    import argparse

    # argparse asks gettext for each of its words; Python ships no translation of them, and
    # finding that out imports locale and looks for .mo files on every start: its words as they are
    argparse._ = _as_written
    argparse.ngettext = _as_written_n

    def formatter(prog):
        # Given a width, argparse skips importing shutil just to ask for it: --help stays fast.
        try:
            width = int(os.environ.get("COLUMNS") or os.get_terminal_size(sys.stdout.fileno()).columns)
        except (ValueError, OSError):
            width = 80
        return argparse.RawDescriptionHelpFormatter(prog, width=max(40, width - 2))

    class Parser(argparse.ArgumentParser):
        """One usage line, the error and a did-you-mean: argparse's usage block alone runs to 7 lines."""

        def error(self, message):
            from checks.cli.options import did_you_mean, nagios_argv  # only here: --help imports nothing of ours
            hint = did_you_mean(message, options)
            if "argument COMMAND" in message and not hint:  # none given: say which there are
                hint = " (one of: %s)" % ", ".join(list(COMMANDS) + list(TOOLS))
            prog = "%s %s" % (self.prog, chosen) if chosen and self.prog == "smoke.py" else self.prog
            if nagios_argv(argv):  # Nagios shows stdout's first line
                print("SMOKE UNKNOWN - usage: %s%s" % (message.replace("|", "/"), hint))
            self.exit(3 if nagios_argv(argv) else 2, "usage: %s [options]  (%s --help lists them)\n%s: error: %s%s\n"
                      % (prog, prog, self.prog, message, hint))

        def exit(self, status=0, message=None):
            if message:
                from checks.cli.terminal import say  # only on this path: --help imports nothing of ours
                say(message.rstrip("\n"))
            sys.exit(status)

    class Version(argparse.Action):
        """--version imports the package only when asked."""

        def __call__(self, parser, namespace, values, option_string=None):
            from checks import __version__
            print("smoke.py " + __version__)
            parser.exit()

    parser = Parser(prog="smoke.py", description=DESCRIPTION, epilog=EXAMPLES + FOOTER, formatter_class=formatter)
    parser.add_argument("--version", action=Version, nargs=0, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _command(argv)
    options = list(COMMANDS) + list(TOOLS)
    for name, (module_name, text) in list(COMMANDS.items()) + list(TOOLS.items()):
        if chosen and name != chosen:  # each parser costs start-up time; the others are only for --help
            continue
        sub = commands.add_parser(name, help=text, description=text, formatter_class=formatter)
        if name == chosen and name in TOOLS:
            __import__(module_name)
            sys.modules[module_name].add_arguments(sub)
            sub.epilog = "examples:\n" + sys.modules[module_name].EXAMPLES
            options += [option for action in sub._actions for option in action.option_strings]
        elif name == chosen:  # only the chosen command pays for its imports
            from checks import command
            from checks.cli.options import add_arguments
            face = command.of(module_name)
            face.add_arguments(sub)  # its own flags first, then those every command has
            add_arguments(sub, face.DEADLINE_HELP)
            sub.epilog = "examples:\n" + face.EXAMPLES + "\n" + FOOTER
            options += [option for action in sub._actions for option in action.option_strings]
    return parser


def _as_written(text):
    return text


def _as_written_n(singular, plural, count):
    return singular if count == 1 else plural


def _command(argv):
    """The command argv names, resolved before parsing as pip does: the first word that is
    not one of the top-level options (--help, --version). None when there is none."""
    for arg in argv:
        if arg in ("-h", "--help", "--version"):
            continue
        return arg if arg in COMMANDS or arg in TOOLS else None
    return None


def _open_stdio():
    """Give closed fds 0-2 a /dev/null, and return which were closed.

    Run with 2>&- and the next file we open (a socket, the --output temp file) would
    become fd 2 and receive whatever anything writes to stderr.
    """
    closed = set()
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free fd: this one
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            closed.add(name)
    if sys.stdout is None:
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    return closed


# Each thread's stack, whatever `ulimit -s` says: a probe parses JSON 5,000 levels deep in a
# worker thread, where a 512 KB stack would end the run in SIGSEGV, with no report.
THREAD_STACK = 8 << 20


class _Stopped(BaseException):
    """SIGTERM or SIGHUP during a command that runs no check: ended as the run's commands end."""


def _tool(args) -> int:
    """A TOOLS command, SIGTERM and SIGHUP ending it with their codes (143, 129) and its files
    left whole (what it writes is staged and renamed), as SIGINT ends it with 130."""
    import signal

    def stop(signum, frame):
        raise _Stopped(signum)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    from checks.cli.terminal import say

    __import__(TOOLS[args.command][0])
    try:
        return sys.modules[TOOLS[args.command][0]].main(args)
    except _Stopped as stopped:
        say("smoke.py %s: stopped by %s" % (args.command, signal.Signals(stopped.args[0]).name))
        return 128 + stopped.args[0]
    except MemoryError:
        say("smoke.py %s: out of memory (a limit of this host: ulimit -v?)" % args.command)
        return 3
    except Exception as exc:  # a defect of ours is never a pass or a fail (1) of what it reads
        if getattr(args, "debug", False):
            raise
        say("smoke.py %s: internal error: %s: %s" % (args.command, type(exc).__name__, exc))
        return 3


def main(argv=None):
    closed = _open_stdio()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parser(argv).parse_args(argv)
    except BrokenPipeError:  # smoke.py --help | head -1
        from checks.cli.terminal import park_stdout
        park_stdout()
        return 0
    import threading
    try:
        threading.stack_size(THREAD_STACK)
    except (RuntimeError, ValueError):  # a platform that sets no thread's stack: its own default
        pass
    if args.command in TOOLS:  # it runs no check: none of the run's stages
        return _tool(args)
    from checks import SmokeError, cli
    from checks.model import ExitCode

    try:
        return cli.run(args, COMMANDS, closed)
    except SmokeError as exc:
        cli.say("smoke.py: error: %s" % exc)
        if cli.nagios(args):  # Nagios shows the first line of stdout: UNKNOWN, not "(No output)"
            print("SMOKE UNKNOWN - %s" % str(exc).split("\n", 1)[0].replace("|", "/"))
            return 3  # a config error is UNKNOWN, not CRITICAL
        return exc.exit_code
    except KeyboardInterrupt:  # before any check ran: nothing to report or clean up
        cli.say("smoke.py: interrupted")
        return 3 if cli.nagios(args) else int(ExitCode.SIGINT)
    except MemoryError:  # before a report could be built: this host's limit, said as such
        cli.say("smoke.py: out of memory (a limit of this host: ulimit -v?); no report")
        return int(ExitCode.UNKNOWN)
    except Exception as exc:
        if args.debug:
            raise
        cli.say("smoke.py: internal error: %s: %s (run with --debug for the traceback)" % (type(exc).__name__, exc))
        return int(ExitCode.UNKNOWN)
