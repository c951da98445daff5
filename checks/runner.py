"""Runs checks: concurrency, timeouts, retries, the run deadline, interruption.

Probes bound their own I/O, but the runner does not trust them to: every check has
a hard budget, and a probe that overruns it is abandoned (its thread is a daemon)
and reported as a failure, so nothing can hang the run.
"""

from __future__ import annotations

import collections
import json
import math
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Callable, Dict, List, Optional, Tuple

from checks import CheckError, expect
from checks.lifecycle import Interrupted
from checks.model import SIGNAL_NAMES, Check, Planned, Result, cut, reportable

DEFAULT_CONCURRENCY = 32
MAX_CONCURRENCY = 10000
MAX_DEADLINE_S = 7 * 86400.0
_FACT_CAP = 2048        # bytes of JSON per fact kept in a report: evidence, not a dump
FDS_PER_CHECK = 8
_FDS_RESERVED = 16      # stdio, the config, --output's temp file, the watchdog: outside the checks' share


class RunContext(collections.namedtuple("RunContext", "concurrency deadline_s on_result redact cleanup chosen cancel "
                                                      "give_up on_progress state_dir run_sections deadline_flag "
                                                      "deadline_said",
                                        defaults=(DEFAULT_CONCURRENCY, None, None, lambda value: value, None,
                                                  None, None, None, None, None, None, "--deadline", None))):
    """How to run: checks at once, the run's deadline, a callback per result,
    secrets.Secrets.redact (applied before anything is cut short), the run's
    lifecycle.Cleanup, where a probe registers what it creates (None: undone by the probe
    alone), the names of the section's steps chosen to run (None: all), an Event that
    cancels a run outside the main thread, which signals cannot interrupt (None: none), and
    give_up(): why polling is pointless now (the server we started has exited), or None;
    on_progress(text): how a long check is coming along, for a terminal (None: nobody looks);
    state_dir: where runs keep their history and locks; run_sections(names, ctx): the report
    of other sections of the config, run now (rollback's --run and verify); deadline_flag:
    what set deadline_s, as a message names it (rollback's time_budget); deadline_said: the
    same with the value it was given (deadline_s is what is left of it)."""

    __slots__ = ()


def deadline_said(ctx: RunContext) -> str:
    """The run's deadline as a message names it: --deadline 120s (as given, not what is left)."""
    return ctx.deadline_said or "%s %gs" % (ctx.deadline_flag, ctx.deadline_s or 0)


def fd_limited(concurrency: int, per_check: int = FDS_PER_CHECK) -> Tuple[int, Optional[int]]:
    """The concurrency that fits in the file-descriptor limit, and that limit when it binds.

    A check may hold up to per_check descriptors at once (FDS_PER_CHECK: a command's pipes,
    a socket, a regex helper's pipes; fewer for a kind known to need fewer); past the limit
    every one would fail with EMFILE.
    """
    if concurrency <= 1:
        return concurrency, None
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return concurrency, None
    if soft == resource.RLIM_INFINITY:
        return concurrency, None
    from checks import procfs
    used = procfs.open_fds() or _FDS_RESERVED
    fits = max(1, (soft - used - _FDS_RESERVED) // per_check)
    return (concurrency, None) if fits >= concurrency else (fits, soft)


def select(checks: List[Planned], tags=(), skip_tags=(), only=()) -> Tuple[List[Planned], List[Result]]:
    """Split planned steps into those selected and `skip` results for the rest."""
    chosen, skipped = [], []
    for check in checks:
        reason = None
        if only and check.name not in only:
            reason = "not selected (--only)"
        elif tags and not set(tags) & set(check.tags):
            reason = "not selected (--tag %s)" % ",".join(tags)
        elif set(skip_tags) & set(check.tags):
            reason = "not selected (--skip-tag %s)" % ",".join(sorted(set(skip_tags) & set(check.tags)))
        if reason:
            skipped.append((check, reason))
        else:
            chosen.append(check)
    _with_what_they_need(chosen, skipped)
    return chosen, [Result(check.name, check.section, check.kind, "skip", reason, tags=check.tags,
                           severity=check.severity, target=check.target, expect=check.expect)
                    for check, reason in skipped]


def _with_what_they_need(chosen: list, skipped: list) -> None:
    """Steps that chosen ones take values from are chosen too, and `always` steps (cleanup)
    of what is chosen: --only predict must deploy first, and clean up after."""
    while True:
        names = {(step.section, step.name) for step in chosen}
        needed = {(step.section, need) for step in chosen if not getattr(step, "always", False)
                  for need in getattr(step, "needs", ())}
        pulled = [(step, reason) for step, reason in skipped if (step.section, step.name) in needed
                  or getattr(step, "always", False) and any((step.section, need) in names for need in step.needs)]
        if not pulled:
            return
        for item in pulled:
            skipped.remove(item)
            chosen.append(item[0])


def run_checks(checks: List[Check], ctx: RunContext, facts_out: Optional[List[Dict[str, Any]]] = None,
               exact: bool = False) -> List[Result]:
    """Run checks on a pool of workers; results come back in the order the checks were given.
    facts_out, when given, has one dict per check for its real facts (run_check's). A pool this
    host cannot give every worker runs with those it could start; with exact (a concurrency
    probe, where "at once" is the point), that is an error of every check.

    A pool, not a thread per check: starting a thread waits for it to be scheduled,
    which under load costs more than a fast check.
    """
    return _Pool(checks, ctx, facts_out).run(exact)


COLLECT_PAUSE_S = 0.002  # between collections: results gather, and the workers keep the GIL
GROW_S = 0.002  # a pool with no result for this long, and checks left to start, grows fourfold


def _our_fault(kind: Optional[str], exc: Exception) -> str:
    """An exception of ours, in one line: this host's limit said as such (it is no failure of
    the target, and no bug either), else an internal error; kind: the probe's, if in one."""
    text = str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory%s (a limit of this host: ulimit -v?)" % (" in the %s probe" % kind if kind else "")
    if text.startswith(("can't start new thread", "can't allocate")):  # a thread, or a lock's memory
        return "cannot go on%s: %s (a limit of this host: ulimit -u, or memory)" % (
            " in the %s probe" % kind if kind else "", text)
    return "internal error%s: %s: %s" % (" in %s probe" % kind if kind else "", type(exc).__name__, text)


class _Pool:
    """Workers take the next check; the main thread collects results and gives up on a check
    past its budget (its worker is replaced) or on all of them at the run's deadline."""

    def __init__(self, checks: List[Check], ctx: RunContext, facts_out: Optional[List[Dict[str, Any]]]):
        self.checks, self.ctx, self.facts_out = checks, ctx, facts_out
        self.pending = iter(range(len(checks)))  # shared by the workers: next() on it is atomic
        self.finished: List[Tuple[int, Result]] = []  # done, not yet taken by the main thread
        self.began: Dict[int, float] = {}  # running checks -> when they started
        self.abandoned: set = set()
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.ready = threading.Condition(self.lock)
        self.run_ends = time.monotonic() + ctx.deadline_s if ctx.deadline_s else None
        self.results: Dict[int, Result] = {}
        self.budgets = [check.budget() for check in checks]
        self.workers, self.no_thread = 0, ""  # live workers; why the last one could not be started
        self.wanted = min(max(1, ctx.concurrency), len(checks))

    def run(self, exact: bool = False) -> List[Result]:
        """The results, in the checks' order. exact: all `concurrency` at once (a concurrency probe);
        else the pool starts with one worker and grows fourfold while its checks wait (on the network, a
        command): quick local checks (10,000 files) run in a few threads that do not fight over
        the GIL, and slow ones still all run side by side within milliseconds."""
        wanted = self.wanted
        try:
            started = sum(self.spawn() for _ in range(wanted if exact else 1))
            if not started or (exact and started < wanted):
                self.end_all(lambda index, running: _result(self.checks[index], "error", "%d of %d at once: cannot "
                                                            "start a thread: %s" % (started, wanted, self.no_thread)))
            while len(self.results) < len(self.checks):
                if self.collect():
                    if len(self.results) < len(self.checks):  # let the next results gather: waking for
                        time.sleep(COLLECT_PAUSE_S)  # each one would take the GIL from the workers per check
                    continue
                self.grow()  # nothing came: the checks wait on something
                with self.lock:  # no worker left, none running, and no result waiting to be collected
                    stranded = not self.workers and not self.began and not self.finished
                if stranded:  # the workers gone (a replacement could not be started) with checks left
                    self.end_all(lambda index, running: _result(self.checks[index], "error", "not run: cannot "
                                                                "start a thread: %s" % self.no_thread))
                    break
                if self.ctx.cancel is not None and self.ctx.cancel.is_set():  # a signal, in a thread it cannot reach
                    self.end_all(lambda index, running: _result(self.checks[index], "skip", "interrupted"))
                    break
                if self.run_ends and time.monotonic() >= self.run_ends:  # woken with nothing done: the deadline
                    self.end_all(lambda index, running: _result(
                        self.checks[index], "fail", "deadline exceeded (%s)" % deadline_said(self.ctx),
                        running.get(index), int(index in running)))
                    break
                self.give_up_overdue()  # or a budget
        except Interrupted as exc:
            self.stop.set()
            with self.lock:  # finished just before the signal: keep them
                for index, result in self.finished:
                    self.results.setdefault(index, result)
            for index in range(len(self.checks)):
                if index not in self.results:
                    self.results[index] = _result(self.checks[index], "skip", "interrupted by %s"
                                                  % SIGNAL_NAMES[exc.signum])
            raise exc.carrying([self.results[i] for i in sorted(self.results)]) from None
        finally:
            self.stop.set()
        return [self.results[i] for i in sorted(self.results)]

    def work(self) -> None:
        try:
            self.take()
        finally:
            with self.lock:
                self.workers -= 1

    def take(self) -> None:
        while not self.stop.is_set():
            index = next(self.pending, None)
            if index is None:
                return
            try:  # a bug of ours past the probe (masking, say), or memory: this check's error, not a dead worker
                with self.lock:
                    self.began[index] = time.monotonic()
                result = run_check(self.checks[index], self.ctx, self.run_ends, self.stop,
                                   self.facts_out[index] if self.facts_out else None)
            except Exception as exc:
                result = _result(self.checks[index], "error", _our_fault(None, exc))
            with self.ready:  # here, not when the main thread gets to it: `began` stays as small as the pool
                self.began.pop(index, None)
                replaced = index in self.abandoned  # a new worker has this slot now
                self.finished.append((index, result))
                self.ready.notify()
            if replaced:
                return

    def spawn(self) -> bool:
        """A worker more; False when this host gives no thread (a limit: ulimit -u, memory)."""
        from checks import lifecycle

        with self.lock:
            self.workers += 1
        try:
            lifecycle.start_thread(self.work, "smoke-worker")
            return True
        except CheckError as exc:
            with self.lock:
                self.workers -= 1
            self.no_thread = str(exc)
            return False

    def grow(self) -> None:
        """Four times the workers (up to the concurrency) while checks are left to start."""
        with self.lock:
            more = min(3 * self.workers, self.wanted - self.workers) if self.waiting() else 0
        for _ in range(more):
            if not self.spawn():
                break

    def waiting(self) -> int:
        """Checks not started yet (under the lock)."""
        return len(self.checks) - len(self.results) - len(self.began) - len(self.finished)

    def finish(self, index: int, result: Result) -> None:
        self.results[index] = result
        if self.ctx.on_result:
            self.ctx.on_result(result)

    def collect(self) -> bool:
        """Wait for results (at most until a budget or the deadline passes); whether any came."""
        with self.ready:
            if not self.finished:
                soon = GROW_S if self.workers < self.wanted and self.waiting() else 1.0
                wake = min([t + self.budgets[i] for i, t in self.began.items()]
                           + [self.run_ends or math.inf, time.monotonic() + soon])
                self.ready.wait(max(0.0, wake - time.monotonic()))
            batch, self.finished[:] = self.finished[:], []
        for index, result in batch:
            if index not in self.results:  # else it was already given up on
                self.finish(index, result)
        return bool(batch)

    def end_all(self, result_of) -> None:
        """Stop the workers; every check without a result gets result_of(index, {running: began})."""
        self.stop.set()
        with self.lock:
            running = dict(self.began)
        for index in range(len(self.checks)):
            if index not in self.results:
                self.finish(index, result_of(index, running))

    def give_up_overdue(self) -> None:
        """A check past its budget is a fail; its worker is left to its probe, and replaced."""
        now = time.monotonic()
        with self.lock:
            overdue = {i: t for i, t in self.began.items() if now >= t + self.budgets[i]}
            for index in overdue:
                del self.began[index]
                self.abandoned.add(index)
        for index, started in overdue.items():
            self.finish(index, _result(self.checks[index], "fail", "timed out: the probe did not return within "
                                       "%.1fs" % self.budgets[index], started, 1))
            self.spawn()


def run_check(check: Check, ctx: RunContext = RunContext(), run_ends: Optional[float] = None,
              stop: Optional[threading.Event] = None, facts_out: Optional[Dict[str, Any]] = None) -> Result:
    """Probe and judge, retrying on failure; a pass after a retry is flagged flaky. A check
    with `until` polls instead, every `interval` until those conditions hold, within its timeout.

    Conditions are judged on the real facts; the report gets them masked, and masked
    before anything is cut short, so no excerpt can end in a secret and show its start.
    facts_out, when given, receives the real facts of the last attempt (for captures).
    """
    started = time.monotonic()
    polls_end = started + check.timeout if check.until else None
    if polls_end and run_ends:
        polls_end = min(polls_end, run_ends)
    attempts = 0
    while True:
        attempts += 1
        timeout = check.timeout if polls_end is None else polls_end - time.monotonic()
        if polls_end is not None:  # the last poll comes at the timeout: it still gets time to answer
            timeout = max(timeout, min(1.0, check.interval, check.timeout))
        if run_ends:
            timeout = min(timeout, run_ends - time.monotonic())
        timeout = max(0.01, timeout)
        ends = time.monotonic() + timeout
        try:
            facts = check.probe(timeout, ctx)
            waiting = judge(check.until, facts, ends, ctx.redact) if check.until else []
            problems = waiting or judge(check.expect, facts, ends, ctx.redact, check.on_no_data)
        except CheckError as exc:
            return _result(check, "error", ctx.redact(str(exc)), started, attempts)
        except Exception as exc:  # a limit of this host, or a bug in a probe: must not take the run down
            return _result(check, "error", ctx.redact(_our_fault(check.kind, exc)), started,
                           attempts)
        if facts_out is not None:
            facts_out.clear()
            facts_out.update(facts)
        if polls_end is not None:
            hopeless = ctx.give_up() if waiting and ctx.give_up else None
            pause = min(check.interval, polls_end - time.monotonic())  # the last poll comes at the timeout
            if waiting and not hopeless and pause > 0:
                if not (stop.wait(pause) if stop else time.sleep(pause)):
                    continue
            facts = dict(facts, polls=attempts, waited_s=round(time.monotonic() - started, 3))
            if waiting:
                problems = [_still_waiting(check, facts, ends, ctx, waiting, time.monotonic() - started, attempts)]
                if hopeless:
                    problems[0] = "gave up: %s; %s" % (ctx.redact(hopeless), problems[0])
        shown = ctx.redact(reportable(facts))
        if not problems:
            said = "%s (on_no_data = pass)" % shown["no_data"] if facts.get("no_data") and check.on_no_data == "pass" \
                else ""
            return _result(check, "pass", said, started, attempts, shown, flaky=attempts > 1 and polls_end is None)
        out_of_time = run_ends and time.monotonic() + check.retry_delay >= run_ends
        if polls_end is None and attempts <= check.retries and not out_of_time:
            stopped = stop.wait(check.retry_delay) if stop else time.sleep(check.retry_delay)
            if not stopped:  # else the run is over: report this attempt
                continue
        message = "; ".join(problems)
        if attempts > 1 and polls_end is None:
            message += " (%d attempts)" % attempts
        return _result(check, "fail", ctx.redact(message), started, attempts, shown)


def _still_waiting(check: Check, facts: Dict[str, Any], ends: float, ctx: RunContext, waiting: List[str],
                   seconds: float, polls: int) -> str:
    """Why polling gave up: the conditions still unmet (or the last error), and for a text
    fact (a log, a body) the last lines seen, where an awaited line would have appeared."""
    unmet = [c for c in check.until if expect.unmet(c, facts, ends)]
    if unmet and not facts.get("error"):
        message = "still not %s after %.1fs (%d polls)" % ("; ".join(c.text for c in unmet), seconds, polls)
        missing = [expect.unmet(c, facts, ends) for c in unmet if expect.resolve(facts, c.path) is expect.MISSING]
        if missing:  # a typo in a path waits to no end: say what is there instead
            message += ": " + "; ".join(missing)
    else:  # the probe itself failed each time (connection refused)
        message = "still failing after %.1fs (%d polls): %s" % (seconds, polls, "; ".join(waiting))
    text = facts.get(unmet[0].path[0]) if unmet else None
    if isinstance(text, str) and text.strip():
        last = text.rstrip("\n").split("\n")[-3:]
        message += "; last lines seen: %s" % " | ".join(cut(line, 200) for line in last)
    return ctx.redact(message)


def judge(conditions, facts: Dict[str, Any], deadline: Optional[float] = None,
          redact: Callable[[Any], Any] = lambda value: value, on_no_data: str = "expect") -> List[str]:
    """The unmet expectations; a probe's `error` fails the check unless a condition is about it.

    Facts that say no_data (an empty answer) are judged by on_no_data when it is not
    "expect": "fail" and "pass" whatever the conditions say, "error" (CheckError) when the
    config says an empty answer means we could not check.
    """
    if facts.get("no_data") and on_no_data != "expect":
        if on_no_data == "error":
            raise CheckError(str(facts["no_data"]))
        return [str(facts["no_data"])] if on_no_data == "fail" else []
    if facts.get("error") and not any(c.path[0] == "error" for c in conditions):
        return [str(facts["error"])]
    return expect.failures(list(conditions), facts, deadline, redact)


def _result(check: Check, status: str, message: str, started: Optional[float] = None,
            attempts: int = 0, facts: Optional[Dict[str, Any]] = None, flaky: bool = False) -> Result:
    duration = (time.monotonic() - started) * 1000 if started else 0.0
    if status == "fail" and check.severity == "warning":  # reported, never failing the verdict
        status = "warn"
    return Result(check.name, check.section, check.kind, status, message, duration, attempts,
                  check.tags, check.severity, excerpt(facts or {}), flaky, check.target,
                  tuple(condition.text for condition in check.expect))


def excerpt(facts: Dict[str, Any]) -> Dict[str, Any]:
    """Facts fit for a report: any value over the cap becomes a marked excerpt of its text."""
    out = {}
    for key, value in facts.items():
        if value is None or isinstance(value, (bool, int, float)):
            out[key] = value
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > _FACT_CAP:
            value = text[:_FACT_CAP] + "… (%d more characters)" % (len(text) - _FACT_CAP)
        out[key] = value
    return out
