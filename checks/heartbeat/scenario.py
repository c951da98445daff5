"""heartbeat's scenario: start (or attach), wait for steady heartbeats, kill, detect within
the deadline, watch the grace period, stop; each step a result with its timing.
"""

from __future__ import annotations

import collections
import os
import signal as signals
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

from checks import CheckError, fsio, lifecycle, procfs, steps
from checks.heartbeat.spec import BOUND_SAID, NAME, Process, Spec, _beats, _scenario, plan
from checks.lifecycle import Interrupted
from checks.model import Outcome, Result, cut

POLL_S = 0.02  # how often the event logs are read while waiting for beats, readiness, the grace
DETECT_POLL_S = 0.004  # and after the kill, where it is the measure's own lag: a few stats and reads a poll


def run(spec: Spec, ctx) -> Outcome:
    return _Run(spec, ctx).run()


class _Stop(Exception):
    """Ends the scenario at a step: a fail (the system's), or an error (smoke.py could not
    tell: a log it cannot read, a pattern too slow)."""

    def __init__(self, step: str, message: str, status: str = "fail"):
        super().__init__(message)
        self.step, self.message, self.status = step, message, status


_STOP_SIGNALS = (signals.SIGSTOP, signals.SIGTSTP, signals.SIGTTIN, signals.SIGTTOU)


class _Run:
    """One scenario: each step a result with its timing; whatever ends it, what was
    started is stopped and the report says what was done."""

    def __init__(self, spec: Spec, ctx):
        from checks.probes.events import Follow

        self.spec, self.ctx = spec, ctx
        self.results: List[Result] = []
        self.metrics: Dict[str, Any] = {} if spec.attach else {"run_dir": spec.run_dir}
        self.started: Dict[str, Any] = {}  # name -> Spawned
        # from their end: what a log held before this run (an earlier run's events) does not count
        self.follows = [(log, Follow(log, from_end=True)) for log in spec.logs]
        self.ids = {p.name: p.worker_id for p in spec.workers} if spec.workers else {spec.kill: None}
        self.targets = {p.name: p.target for p in plan(spec)}
        self.began = time.monotonic()
        self.step = "attach" if spec.attach else "coordinator"  # under way, for an error's result
        self.victim = None
        self.lines_read, self.last_line, self.strangers = 0, "", set()  # for a hint when nothing matches
        # under `all`, --deadline bounds the whole run (heartbeat's own --deadline is spec.deadline)
        self.run_ends = time.monotonic() + ctx.deadline_s if ctx.deadline_s else None

    def shown(self, log: str) -> str:
        """A log by its path in run_dir (logs/sentinel1.log), else as given."""
        inside = os.path.relpath(log, self.spec.run_dir)
        return log if self.spec.attach or inside.startswith("..") else inside

    def until(self, seconds: float) -> float:
        """When a wait of this many seconds ends: then, or at the run's deadline."""
        ends = time.monotonic() + seconds
        return min(ends, self.run_ends) if self.run_ends else ends

    def out_of_time(self, step: str) -> None:
        if self.run_ends and time.monotonic() >= self.run_ends:
            from checks.runner import deadline_said
            raise _Stop(step, "deadline exceeded (%s)" % deadline_said(self.ctx))

    def record(self, step: str, status: str, message: str, **facts) -> None:
        self.results.append(Result(step, NAME, "heartbeat", status, self.ctx.redact(message),
                                   (time.monotonic() - self.began) * 1000, 1, severity="critical", facts=facts,
                                   target=self.targets.get(step, "")))
        self.began = time.monotonic()

    def read(self, step: str) -> List[Tuple[str, Any]]:
        """New events from every log, each with the log it came from: (log, event). A log that
        cannot be read, or a pattern too slow for its lines, is an error: smoke.py cannot tell."""
        found = []
        for log, follow in self.follows:
            lines = follow.lines()
            self.lines_read += len(lines)
            if lines:
                self.last_line = lines[-1]
            if follow.problem:
                raise _Stop(step, "the events log: %s" % follow.problem, "error")
            try:
                found += [(log, event) for event in self.spec.matcher.parse(lines, time.monotonic() + 1)]
            except CheckError as exc:
                raise _Stop(step, "reading %s: %s" % (self.shown(log), exc), "error")
        return found

    def kept_up(self, step: str) -> None:
        """A wait that ended with more unread than one poll takes in is smoke.py's shortfall, not
        the system's (a few lines written since the last poll are not)."""
        from checks.probes.events import READ_PER_POLL
        behind = [(log, follow.unread()) for log, follow in self.follows if follow.unread() > READ_PER_POLL]
        if behind:
            raise _Stop(step, "smoke.py fell behind: %s unread when the wait ended (the pattern is too slow for "
                              "this log: give it more fixed text, e.g. 'worker (?P<worker>\\S+) failed')" % ", ".join(
                                  "%d bytes of %s" % (size, self.shown(log)) for log, size in behind), "error")

    def hint(self) -> str:
        """What the logs held, when no event of the kind awaited came: a wrong topic or field
        must not read like a dead cluster."""
        if self.strangers:
            return "; events named only: %s" % ", ".join(sorted(self.strangers)[:10])
        if not self.lines_read:
            return "; the events log%s had no new lines" % ("s" if len(self.follows) > 1 else "")
        return "; %d lines read, none an event of the configured kind (the last: %s)" % (
            self.lines_read, cut(self.last_line, 120))

    def who(self, worker: str) -> Optional[str]:
        """The worker an event names, by its name or its id; None for a name we do not know."""
        if worker in self.ids:
            return worker
        return next((name for name, worker_id in self.ids.items() if worker_id == worker), None)

    def run(self) -> Outcome:
        spec = self.spec
        interrupted: Optional[Interrupted] = None
        self.before = {pid for pid, _ in procfs.children()}  # not this run's, whatever is left of them
        for _, follow in self.follows:
            follow.lines()  # each log's end, now: what it held before this run does not count
        try:
            try:
                spec.matcher.warm(time.monotonic() + 10)
                for prefix, loaded in (("preflight.", spec.preflight), ("build.", spec.build)):
                    if loaded and not self.prepare(prefix, loaded):
                        break
                else:
                    self.scenario()
            except _Stop as stop:
                self.record(stop.step, stop.status, stop.message)
            except CheckError as exc:
                self.record(self.step, "error", str(exc))
            except Exception as exc:  # a bug of ours: this step's error, and everything still stopped
                self.record(self.step, "error", "internal error: %s: %s" % (type(exc).__name__, exc))
        except Interrupted as exc:  # stopped below like any other end; the report keeps what was done
            interrupted = exc
            self.results += exc.results or []
        for _, follow in self.follows:
            follow.close()
        _, late = lifecycle.shielded(self.stop)  # a signal now is obeyed once everything is stopped
        interrupted = interrupted or late
        done = {r.name for r in self.results}
        why = "interrupted" if interrupted else "skipped: an earlier step did not pass"
        self.results += [Result(step, NAME, "heartbeat", "skip", why, severity="critical", target=self.targets[step])
                         for step in _scenario(spec) if step not in done]
        order = list(self.targets)  # preflight, build, then the scenario's own order
        self.results.sort(key=lambda r: order.index(r.name) if r.name in order else len(order))
        if interrupted:
            raise interrupted.carrying(self.results, {NAME: self.metrics}) from None
        return Outcome(self.results, self.metrics)

    def prepare(self, prefix: str, loaded: List[steps.Step]) -> bool:
        """Preflight or build, in order; whether all passed (nothing is spawned after a failure)."""
        variables = {"run_dir": self.spec.run_dir, "run_id": self.spec.run_id}
        try:
            results, _ = steps.run(loaded, self.ctx, variables, prefix, ends=self.run_ends)
        except Interrupted as exc:
            raise exc.carrying(_as_fails(exc.results)) from None
        # a program that is not there is what a preflight looks for: a fail (exit 1), not "could not evaluate"
        self.results += _as_fails(results)
        self.began = time.monotonic()
        return all(r.status in ("pass", "warn") for r in results)

    def scenario(self) -> None:
        spec = self.spec
        if spec.attach:
            self.victim = self.attach()
        else:
            try:  # ours alone: nobody else plants a link or a file where the run writes its logs and ids
                fsio.private_dir(spec.run_dir)
                fsio.private_dir(os.path.join(spec.run_dir, "logs"))
            except OSError as exc:
                raise _Stop("coordinator", "cannot use %s: %s" % (spec.run_dir, fsio.why(exc)), "error")
            for process in spec.coordinators + spec.workers:  # before anything starts: nothing half-started
                if process.fixed_port is not None and _in_use(process.fixed_port):
                    raise _Stop("workers" if spec.workers_first else "coordinator",
                                "%s: port %d is in use on this host already: what answers there would not be this "
                                "run's (stop it, or give another port)" % (process.name, process.fixed_port), "error")
            workers_began = time.monotonic()
            if spec.workers_first:
                self.step = "workers"
                self.spawn_all(spec.workers, "workers")
            self.began, self.step = time.monotonic(), "coordinator"
            self.spawn_all(spec.coordinators, "coordinator")
            self.record("coordinator", "pass", "logs in %s" % os.path.join(spec.run_dir, "logs"),
                        pids={p.name: self.started[p.name].pid for p in spec.coordinators})
            self.began = workers_began if spec.workers_first else time.monotonic()
            self.step = "workers"
            if not spec.workers_first:
                self.spawn_all(spec.workers, "workers")
            self.victim = self.started[spec.kill]
        self.step = "workers"
        self.steady()
        self.step = "kill"
        self.kill()
        self.step = "detect"
        self.detect()
        self.step = "grace"
        self.grace()

    def attach(self):
        pid, source, _ = self.spec.attach
        if not procfs.alive(pid):
            raise _Stop("attach", "%s is not running: nothing to kill" % source)
        victim = _Attached(pid, self.spec.attach[2])
        if not victim.same():  # its pid now names another process (reused since smoke.py started)
            raise _Stop("attach", "%s is not the process it was when smoke.py started: nothing to kill" % source)
        try:
            os.kill(pid, 0)
        except PermissionError:
            raise _Stop("attach", "cannot signal %s: Operation not permitted (run as its user, or as root)"
                        % source, "error")
        except ProcessLookupError:
            raise _Stop("attach", "%s is not running: nothing to kill" % source)
        for log, follow in self.follows:
            follow.lines()  # to their end now: only what is written from here on counts
            if follow.problem:
                raise _Stop("attach", "the events log: %s" % follow.problem, "error")
        self.record("attach", "pass", "", pid=pid, command=victim.command, logs=self.spec.logs)
        return victim

    def spawn_all(self, processes: List[Process], step: str) -> None:
        """Start each in order, each ready before the next starts."""
        from checks.probes import proc

        for process in processes:
            log = os.path.join(self.spec.run_dir, "logs", process.name + ".log")
            for path in [log] + [path for path, _ in process.files]:
                if os.path.islink(path) or (os.path.exists(path) and not os.path.isfile(path)):
                    raise _Stop(step, "%s: %s is a link or not a regular file (a reused run_dir?): smoke.py writes "
                                      "only files of its own" % (process.name, path), "error")
            path = process.dir
            try:
                fsio.private_dir(process.dir)
                for path, text in process.files:
                    fsio.private_dir(os.path.dirname(path))
                    fsio.replace(path, text.encode("utf-8"), 0o644)
                if process.worker_id is not None:
                    path = os.path.join(self.spec.run_dir, "logs", process.name + ".id")
                    fsio.replace(path, (process.worker_id + "\n").encode(), 0o644)
            except OSError as exc:
                raise _Stop(step, "%s: cannot write %s: %s" % (process.name, path, fsio.why(exc)), "error")
            log = os.path.join(self.spec.run_dir, "logs", process.name + ".log")
            offset = os.path.getsize(log) if os.path.exists(log) else 0  # an earlier run's lines do not count
            try:
                self.started[process.name] = proc.spawn(process.argv, log, self.ctx.cleanup, env=process.env,
                                                        cwd=process.cwd)
            except CheckError as exc:
                raise _Stop(step, "%s: %s" % (process.name, exc))
            problem = _not_ready(self.started[process.name], process, offset, self.until(process.ready_timeout))
            self.out_of_time(step)
            if problem:  # named, unless the step's name already says who
                raise _Stop(step, problem if process.name == step else "%s %s" % (process.name, problem))

    def steady(self) -> None:
        """Every worker beating min_beats times within stable_timeout (or only ready, when
        no heartbeat events are configured). A failure event now is a false positive."""
        spec = self.spec
        if not _beats(spec):
            for _, event in self.read("workers"):  # not counted, but a failure before the kill is a lie
                if event.kind == "failure":
                    raise _Stop("workers", "false positive: %s reported failed before anything was killed"
                                % (self.who(event.worker) or event.worker))
            if spec.workers:
                pids = {p.name: self.started[p.name].pid for p in spec.workers}
                self.record("workers", "pass", "ready; no heartbeat events configured, so steadiness was not "
                                               "measured", pids=pids)
            return
        began = self.began
        beats = collections.defaultdict(list)
        ends = self.until(spec.stable_timeout)
        while time.monotonic() < ends and any(len(beats[n]) < spec.min_beats for n in self.ids):
            for _, event in self.read("workers"):
                name = self.who(event.worker)
                if event.kind == "failure":
                    raise _Stop("workers", "false positive: %s reported failed before anything was killed"
                                % (name or event.worker))
                if name:
                    beats[name].append(event.at if event.at is not None else event.seen)
                else:
                    self.strangers.add(event.worker)
            self.alive("workers", ())
            time.sleep(POLL_S)
        quiet = [n for n in self.ids if len(beats[n]) < spec.min_beats]
        if quiet:
            self.out_of_time("workers")
            self.kept_up("workers")
        intervals = {n: round((b[-1] - b[0]) / (len(b) - 1), 3) for n, b in beats.items() if len(b) > 1}
        self.metrics.update(steady_s=round(time.monotonic() - began, 3), beat_interval_s=intervals)
        if quiet:
            raise _Stop("workers", "no steady heartbeats within %gs from %s (%s)%s" % (
                spec.stable_timeout, ", ".join(quiet), ", ".join("%s: %d" % (n, len(beats[n])) for n in quiet),
                self.hint() if all(not beats[n] for n in self.ids) else ""))
        self.record("workers", "pass", "", beats={n: len(b) for n, b in beats.items()}, intervals_s=intervals,
                    **({"pids": {p.name: self.started[p.name].pid for p in spec.workers}} if spec.workers else {}))

    def alive(self, step: str, killed) -> None:
        """A process of ours that exits on its own fails the run (the system broke, not the
        test); so does the victim of attach mode that ends before we kill it."""
        from checks.kinds.spawn import tail

        for name, spawned in self.started.items():
            if name not in killed and not spawned.running():
                raise _Stop(step, "%s exited with code %s during the run; its log ends: %s"
                            % (name, spawned.proc.returncode, tail(spawned.log_path)))
        if self.spec.attach and not killed and self.victim is not None and not self.victim.same():
            raise _Stop(step, "%s ended before it was killed (%s)" % (self.spec.attach[1], self.victim.command))

    def kill(self) -> None:
        signame = signals.Signals(self.spec.signum).name
        if self.spec.attach and not self.victim.same():  # the pid may name another process by now
            raise _Stop("kill", "%s is no longer the process attached to (%s): nothing was sent"
                        % (self.spec.attach[1], self.victim.command))
        if self.spec.attach and self.spec.signum in _STOP_SIGNALS and self.victim.started is not None:
            lifecycle.own_stopped(self.victim.pid, self.victim.started)  # continued even if smoke.py is killed
        try:
            self.victim.signal_all(self.spec.signum)
        except OSError as exc:
            raise _Stop("kill", "cannot send %s to pid %d: %s" % (signame, self.victim.pid, exc.strerror or exc),
                        "error")
        self.killed_at, self.killed_wall = time.monotonic(), time.time()
        self.before_kill: List[float] = []  # failure events for the victim stamped before the kill
        self.record("kill", "pass", "", pid=self.victim.pid, signal=signame)

    def detect(self) -> None:
        spec = self.spec
        detected: Dict[str, Any] = {}  # log -> the failure event it gave for the victim
        ends = self.until(spec.deadline)
        while len(detected) < spec.quorum and time.monotonic() < ends:
            for log, event in self.read("detect"):
                if event.kind != "failure":
                    continue
                name = self.who(event.worker)
                if name == spec.kill and event.at is not None and event.at < self.killed_wall - spec.skew:
                    self.before_kill.append(event.at - self.killed_wall)  # stamped before the kill: no evidence
                elif name == spec.kill:
                    detected.setdefault(log, event)
                else:
                    raise _Stop("detect", "false positive: %s reported failed, but %s was killed"
                                % (name or event.worker, spec.kill))
            self.alive("detect", (spec.kill,))
            time.sleep(DETECT_POLL_S)
        if len(detected) < spec.quorum:
            self.out_of_time("detect")
            self.kept_up("detect")
            missing = [log for log in spec.logs if log not in detected]
            named = ["%s%s" % (self.shown(log), "" if os.path.exists(log) else " (never created)") for log in missing]
            raise _Stop("detect", "no failure event for %s within the deadline of %gs%s%s" % (
                spec.kill, spec.deadline, " from %d of the %d detectors (quorum %d): %s" % (
                    len(missing), len(spec.logs), spec.quorum, ", ".join(named))
                if len(spec.logs) > 1 else "" if os.path.exists(spec.logs[0]) else " (%s was never created)"
                % spec.logs[0], "" if detected else self._stamped_early() or self.hint()))
        seen = sorted(event.seen for event in detected.values())
        facts: Dict[str, Any] = {"detection_s": round(seen[spec.quorum - 1] - self.killed_wall, 3),
                                 "deadline_s": spec.deadline}
        if spec.bound is not None:
            facts["expected_bound_s"] = spec.bound
        stamped = sorted(event.at for event in detected.values() if event.at is not None)
        if len(stamped) >= spec.quorum:
            facts["event_detection_s"] = round(stamped[spec.quorum - 1] - self.killed_wall, 3)
        if len(spec.logs) > 1:
            facts["detectors"] = {self.shown(log): round(event.seen - self.killed_wall, 3)
                                  for log, event in detected.items()}
            facts["quorum"] = spec.quorum
        self.metrics.update(facts)
        said = "detected in %.3fs (deadline %gs%s%s)" % (
            facts["detection_s"], spec.deadline, "; by its own time %.3fs" % facts["event_detection_s"]
            if "event_detection_s" in facts else "", _against_bound(facts["detection_s"], spec.bound))
        self.record("detect", "pass", said, **facts)

    def _stamped_early(self) -> str:
        """Why the failure events seen were no detection: stamped before the kill."""
        if not self.before_kill:
            return ""
        return "; %d failure event%s for %s stamped %.3fs before the kill (more than clock_skew %gs): not taken " \
               "as a detection" % (len(self.before_kill), "" if len(self.before_kill) == 1 else "s", self.spec.kill,
                                 -max(self.before_kill), self.spec.skew)

    def grace(self) -> None:
        spec = self.spec
        survivors = [n for n in self.ids if n != spec.kill]
        after = {n: 0 for n in survivors}
        ends = self.until(spec.grace)
        while time.monotonic() < ends:
            for _, event in self.read("grace"):
                name = self.who(event.worker)
                if event.kind == "failure" and name != spec.kill:
                    raise _Stop("grace", "false positive: %s reported failed %s" % (
                        name or event.worker, "while it was alive" if name else "but only %s was killed" % spec.kill))
                if event.kind == "heartbeat" and name in after:
                    after[name] += 1
            self.alive("grace", (spec.kill,))
            time.sleep(POLL_S)
        self.out_of_time("grace")
        silent = [n for n, count in after.items() if not count and spec.grace >= 1 and _beats(spec)]
        if silent:
            raise _Stop("grace", "survivors stopped beating: %s" % ", ".join(silent))
        self.record("grace", "pass", "", **({"beats": after} if _beats(spec) else {}))

    def stop(self) -> None:
        """Everything we started stopped and gone (spawn); the killed process gone, or a
        stopped one resumed (attach)."""
        from checks.probes import proc

        self.began = time.monotonic()
        if self.spec.attach:
            if any(r.name == "kill" and r.status == "pass" for r in self.results):
                self.stop_attached()
            return
        left = proc.stop_all(list(self.started.values()))
        left = [name for name, spawned in self.started.items() if spawned in left]
        if self.started:
            strays = self.strays()
            problems = ["still running: %s" % ", ".join(left)] if left else []
            if strays:
                problems.append("left running after their group was stopped (they left it with setsid), now "
                                "killed: %s" % ", ".join(strays))
            self.record("stop", "fail" if problems else "pass", "; ".join(problems), stopped=sorted(self.started))

    def stop_attached(self) -> None:
        from checks.probes import proc

        pid = self.victim.pid
        if self.spec.signum in _STOP_SIGNALS:  # frozen to test detection: not left frozen
            if not self.victim.same():
                self.record("stop", "pass", "pid %d ended while stopped: nothing to resume" % pid, pid=pid)
                return
            self.victim.signal_all(signals.SIGCONT)
            lifecycle.release_stopped(pid)
            self.record("stop", "pass", "resumed with SIGCONT", pid=pid)
            return
        ends = time.monotonic() + proc.STOP_GRACE_S
        while self.victim.same() and time.monotonic() < ends:
            time.sleep(POLL_S)
        gone = not self.victim.same()
        self.record("stop", "pass" if gone else "fail", "" if gone else "pid %d is still running %gs after the "
                    "signal" % (pid, proc.STOP_GRACE_S), pid=pid)

    def strays(self) -> List[str]:
        """The run's processes that escaped their groups and came back to us (a subreaper):
        killed, and named."""
        from checks.probes import proc

        found = []
        time.sleep(POLL_S)  # a daemon's parent, just killed, hands it to us in a moment
        for pid, argv in lifecycle.strays(self.before):
            found.append("pid %d (%s)" % (pid, proc.describe(argv)[:80]))
            lifecycle.kill_child(pid)
        return found


def _as_fails(results: List[Result]) -> List[Result]:
    return [r._replace(status="fail" if r.status == "error" else r.status, severity="critical") for r in results]


class _Attached:
    """The one process of a running system that attach mode may signal, known by its pid
    and its start time, so that a pid reused by another process is never signalled."""

    def __init__(self, pid: int, started: Optional[int]):
        try:
            self.command = " ".join(procfs.argv(pid, 4096))
        except OSError:
            self.command = ""
        self.pid, self.started = pid, started

    def same(self) -> bool:
        """Still running, and still the process we attached to."""
        return procfs.alive(self.pid) and procfs.start_time(self.pid) == self.started

    def signal_all(self, signum: int) -> None:
        os.kill(self.pid, signum)  # the pid alone: its group is the system's, not ours


def _against_bound(detection_s: float, bound: Optional[float]) -> str:
    """The detection against the bound the system's own timings promise; over it is within the
    deadline still (a pass), but said: the timings given are not the ones the system keeps."""
    if bound is None:
        return ""
    if detection_s <= bound:
        return "; expected within %gs" % bound
    return "; %.3fs over the %gs its timings promise (%s)" % (detection_s - bound, bound, BOUND_SAID)


def _not_ready(spawned, process: Process, offset: int, ends: float) -> Optional[str]:
    """Why the process is not ready by `ends` (it exited; its log never showed the line after
    `offset`; its port never answered), or None. The log is scanned as it grows, the line
    found even in a piece with no newline yet."""
    import socket

    from checks.kinds.spawn import tail

    line = process.ready_line.encode() if process.ready_line else None
    port = process.ready_port
    seen = b""  # the end of what was read: a line cut between two reads is still found
    while True:
        if not spawned.running():
            return "exited with code %s; its log ends: %s" % (spawned.proc.returncode, tail(spawned.log_path))
        if line is not None:
            try:
                with open(spawned.log_path, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read(1 << 20)
                offset += len(data)
                if line in seen + data:
                    line = None
                seen = (seen + data)[-len(process.ready_line.encode()):]
            except OSError:
                pass
        if line is None and port is not None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                port = None
            except OSError:
                pass
        if line is None and port is None:
            return None
        if time.monotonic() >= ends:
            return "not ready within %gs: %s; its log ends: %s" % (
                process.ready_timeout, "no %r in its log" % process.ready_line if line is not None
                else "nothing answers on port %d" % port, tail(spawned.log_path))
        if line is None or not _data_left(spawned.log_path, offset):
            time.sleep(POLL_S)


def _in_use(port: int) -> bool:
    """Something holds the port on 127.0.0.1 (a listener, or a socket bound there)."""
    import socket

    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: a TIME_WAIT is no owner
        sock.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        sock.close()


def _data_left(path: str, offset: int) -> bool:
    try:
        return os.path.getsize(path) > offset
    except OSError:
        return False
