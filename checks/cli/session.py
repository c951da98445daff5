"""Execute a prepared run: the sections in order, under the run's signals and cleanup.

A signal ends the sections with Interrupted, which carries what was done; either way
cleanup runs, and what escaped its process group is killed. What comes out is the raw
material of the report: results, metrics and times, not yet judged.
"""

from __future__ import annotations

import collections
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List

from checks import lifecycle, model, runner
from checks.cli.terminal import Progress, is_terminal, say


class Executed(collections.namedtuple("Executed", "results metrics started duration_ms")):
    """What a run did: its results (the skipped ones included), each section's metrics, when it
    started (epoch) and how long it took."""

    __slots__ = ()


def execute(prepared, signals) -> Executed:
    """Run the chosen steps of each section in order; from the first signal on, the rest is skipped
    and the cleanup still runs (signals: the run's lifecycle.Signals, disarmed here after the run)."""
    args = prepared.args
    concurrency = _concurrency(args, len(prepared.chosen))
    progress = Progress(len(prepared.chosen), prepared.secrets.redact) \
        if is_terminal(sys.stderr) and not args.quiet else None
    if progress:  # what a command is about to do that a person at a terminal should know first
        for section, spec in prepared.specs.items():
            for line in prepared.faces[section].notice(spec):
                say(prepared.secrets.redact(line))
    cleanup = lifecycle.Cleanup()
    ctx = runner.RunContext(concurrency, prepared.deadline, progress, prepared.secrets.redact, cleanup,
                            on_progress=progress.status if progress else None, state_dir=prepared.state_dir,
                            run_sections=lambda names, ctx: run_sections(prepared, names, ctx),
                            deadline_flag=prepared.deadline_flag)
    started, clock = time.time(), time.monotonic()
    results, metrics = [], {}
    try:
        try:
            for section, spec in prepared.specs.items():
                names = frozenset(step.name for step in prepared.chosen if step.section == section)
                if names:
                    outcome = prepared.faces[section].run(spec, ctx._replace(chosen=names))
                    results += outcome.results
                    if outcome.metrics:
                        metrics[section] = outcome.metrics
        finally:
            signals.disarm()  # from here on a signal is recorded, and the report still written
    except lifecycle.Interrupted as exc:
        results += exc.results
        metrics.update(exc.metrics)  # run_dir, timings so far: for the post-mortem
    if progress:
        progress.clear()
    results += [model.Result("cleanup", args.command, "cleanup", "error", "left behind: %s (%s)" % left,
                             severity="critical", target=left[0])
                for left in cleanup.run_all(close=signals.signum is not None)]
    lifecycle.kill_orphans()
    return Executed(results + prepared.skipped, metrics, started, (time.monotonic() - clock) * 1000)


def _concurrency(args, chosen: int) -> int:
    """--concurrency (default 32), fitted to what this process may open (ulimit -n)."""
    wanted = min(args.concurrency or runner.DEFAULT_CONCURRENCY, chosen)
    concurrency, limit = runner.fd_limited(wanted)
    if limit and not args.quiet:
        say("smoke.py: running %d check%s at a time, not %d: this process may open only %d files (ulimit -n)"
            % (concurrency, "" if concurrency == 1 else "s", wanted, limit))
    return concurrency


def run_sections(prepared, names: List[str], ctx) -> Dict[str, Any]:
    """The report of other sections run now, as `smoke.py SECTION` would make it (rollback's
    --run and verify)."""
    import socket

    began, clock = time.time(), time.monotonic()
    ran, numbers = [], {}
    quiet = ctx._replace(chosen=None, on_result=None, on_progress=None)
    for name in names:
        outcome = prepared.faces[name].run(prepared.inner[name], quiet)
        ran += outcome.results
        if outcome.metrics:
            numbers[name] = outcome.metrics
    return prepared.secrets.redact(model.build_report(
        names[0] if len(names) == 1 else "+".join(names), ran, socket.gethostname(), began,
        (time.monotonic() - clock) * 1000, prepared.min_rate, None, prepared.section_rates, numbers))
