"""The command line's run half: everything after the arguments are parsed, in three stages.

    prepare (gather)   flags + config -> what to run, checked; --validate and --dry-run stop here
                       (session.begin: then --jitter and the start ping, all under the run's signals)
    execute (session)  the sections in order, under the run's signals and cleanup
    deliver (deliver)  the report finalised once, then history, notifications, files, stdout

smoke.py keeps what --help needs (the command table, the parser); this package is imported
only to run, so its code is compiled once and cached, while smoke.py, a script, is compiled
again on every start. Unlike the rest of checks/, it prints (terminal): the report on
stdout, humans' lines on stderr.
"""

from checks.cli.options import nagios
from checks.cli.terminal import park_stdout, say

__all__ = ["run", "nagios", "park_stdout", "say"]


def run(args, commands, closed) -> int:
    """Run the parsed command; its exit code. commands is smoke.COMMANDS ({name: (module,
    help)}): the sections, in the order `all` runs them, are its entries with a module. closed
    names the standard streams that were closed at start (smoke._open_stdio)."""
    from checks import lifecycle
    from checks.cli import deliver, session

    with lifecycle.Signals() as signals:  # from the start: a signal while the config is read is reported too
        prepared, clock, start_problems = session.begin(args, commands, closed, signals)
        if prepared is None:  # --validate, --dry-run: said, nothing run
            return 0
        executed = session.execute(prepared, signals, clock)
        return deliver.deliver(prepared, executed, start_problems, signals, closed, clock)
