"""Begin and execute a run: prepare it, wait --jitter, send the start ping (begin), then the
sections in order (execute), all under the run's signals and cleanup.

A signal ends the sections with Interrupted, which carries what was done; either way
cleanup runs, and what escaped its process group is killed. A signal before the checks
(while the config is read, in --jitter, in the start ping) gives a run where none runs.
What comes out is the raw material of the report: results, metrics and times, not yet judged.
"""

from __future__ import annotations

import collections
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

from checks import lifecycle, model, runner
from checks.cli.terminal import Progress, is_terminal, say


class Executed(collections.namedtuple("Executed", "results metrics started duration_ms problems")):
    """What a run did: its results (the skipped ones included), each section's metrics, when it
    started (epoch), how long it took, and what it left behind (problems)."""

    __slots__ = ()


# With a deadline and somewhere to notify, the run's last share of it is kept for delivery: a
# run whose checks used up --deadline still says so, and --deadline still bounds it all.
DELIVERY_SHARE, DELIVERY_MAX_S = 0.25, 5.0
DELIVERY_CAP_S = 30.0  # what delivery may take when there is no --deadline


class Clock:
    """The run's time: from the end of prepare, --deadline (when it bounds the run) holds for
    the checks and for delivery, which keeps its share of it; without one, delivery has its cap."""

    def __init__(self, prepared):
        self.began = time.monotonic()
        self.ends = self.began + prepared.deadline if prepared.deadline else None
        self.reserve = min(DELIVERY_MAX_S, DELIVERY_SHARE * prepared.deadline) \
            if prepared.deadline and prepared.delivery.wanted() else 0.0

    def checks_deadline(self) -> Optional[float]:
        """Seconds the checks may take from now (None: no deadline)."""
        return None if self.ends is None else max(0.001, self.ends - self.reserve - time.monotonic())

    def delivery_ends(self) -> float:
        """When delivery must be done (monotonic)."""
        return self.ends if self.ends is not None else time.monotonic() + DELIVERY_CAP_S


def begin(args, commands, closed, signals) -> Tuple[Any, Optional[Clock], List[str]]:
    """Prepare the run, wait --jitter and send --ping's start, under the run's signals (entered
    before): (prepared, its clock, the start's problems), prepared None after --validate and
    --dry-run. A signal meanwhile is said in the problems, and execute runs no check; one that
    came while the config was read leaves the run the flags alone describe (unprepared)."""
    from checks.cli import deliver, gather

    prepared, when, problems = None, "while the config was read", []
    try:
        prepared = gather.prepare(args, commands, closed)
        if prepared is None:
            return None, None, []
        when = "in --jitter"
        jitter(args.jitter)
    except lifecycle.Interrupted:
        prepared = prepared or unprepared(args)
    clock = Clock(prepared)  # from here, --deadline bounds everything: the run and its delivery
    try:
        if signals.signum is None:
            when = "while --ping's start was sent"
            problems = deliver.start(prepared, clock)
    except lifecycle.Interrupted:
        pass
    if signals.signum is not None:
        problems.append("interrupted by %s %s: no check was run" % (model.SIGNAL_NAMES[signals.signum], when))
    return prepared, clock, problems


def jitter(seconds: Optional[float]) -> None:
    """--jitter: a random wait first, to spread a fleet's cron runs."""
    if seconds:
        import random
        time.sleep(random.uniform(0, seconds))


def unprepared(args):
    """The run the flags alone describe, for a signal that came before the config was read: no
    check; the report's files and channels, unless one of them is wrong (then none)."""
    from checks import ConfigError, state
    from checks.cli import gather
    from checks.secrets import Secrets

    secrets = Secrets(names=args.secret)
    for name in args.secret:
        if os.environ.get(name):
            secrets.add(os.environ[name])
    try:
        kept, delivery = gather._state({}, args, None), gather._delivery(args, secrets)
        sinks = gather._sinks(args, args.config)
    except ConfigError:  # a wrong flag is used for nothing (with the config read, it would have been exit 2)
        kept, sinks = (state.default_dir(), state.DEFAULT_LIMIT, state.DEFAULT_ESCALATE_AFTER), []
        delivery = gather.Delivery(None, args.notify_format, None, None, None, None, None, None, None)
    return gather.Prepared(args, secrets, {}, {}, {}, [], [], 1.0, {}, *kept, delivery, sinks, None, "--deadline")


def execute(prepared, signals, clock: Clock) -> Executed:
    """Run the chosen steps of each section in order; from the first signal on, the rest is skipped
    and the cleanup still runs (signals: the run's lifecycle.Signals, disarmed here after the run)."""
    if signals.signum is not None:  # it came before the checks (begin): none is run
        signals.disarm()
        return Executed([model.Result(step.name, step.section, step.kind, "skip", "not run: interrupted before "
                                      "the checks started", tags=step.tags, severity=step.severity,
                                      target=step.target, expect=step.expect) for step in prepared.chosen]
                        + prepared.skipped, {}, time.time(), 0.0, [])
    args = prepared.args
    concurrency = _concurrency(args, len(prepared.chosen))
    progress = Progress(len(prepared.chosen), prepared.secrets.redact) \
        if is_terminal(sys.stderr) and not args.quiet else None
    if progress:  # what a command is about to do that a person at a terminal should know first
        for section, spec in prepared.specs.items():
            for line in prepared.faces[section].notice(spec):
                say(prepared.secrets.redact(line))
    cleanup = lifecycle.Cleanup()
    said = "%s %gs%s" % (prepared.deadline_flag, prepared.deadline, ", less %gs kept for notifications"
                         % clock.reserve if clock.reserve else "") if prepared.deadline else None
    ctx = runner.RunContext(concurrency, None, progress, prepared.secrets.redact, cleanup,
                            on_progress=progress.status if progress else None, state_dir=prepared.state_dir,
                            run_sections=lambda names, ctx: run_sections(prepared, names, ctx),
                            deadline_flag=prepared.deadline_flag, deadline_said=said)
    started, began = time.time(), time.monotonic()
    results, metrics, problems = [], {}, []
    try:
        try:
            for section, spec in prepared.specs.items():
                names = frozenset(step.name for step in prepared.chosen if step.section == section)
                if names:  # each section has what is left of the run's deadline
                    outcome = prepared.faces[section].run(spec, ctx._replace(chosen=names,
                                                                             deadline_s=clock.checks_deadline()))
                    results += outcome.results
                    problems += outcome.problems
                    if outcome.metrics:
                        metrics[section] = outcome.metrics
        finally:
            signals.disarm()  # from here on a signal is recorded, and the report still written
    except lifecycle.Interrupted as exc:
        results += exc.results
        metrics.update(exc.metrics)  # run_dir, timings so far: for the post-mortem
    finally:  # an error of ours, or one found late in the config (exit 2), leaves nothing running either
        if progress:
            progress.clear()
        left = cleanup.run_all(close=signals.signum is not None)
        lifecycle.kill_orphans()
    results += [model.Result("cleanup", args.command, "cleanup", "error", "left behind: %s (%s)" % one,
                             severity="critical", target=one[0]) for one in left]
    return Executed(results + prepared.skipped, metrics, started, (time.monotonic() - began) * 1000,
                    problems + ["cleanup: left behind: %s (%s)" % one for one in left])


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
