"""heartbeat: boot a coordinator and workers, wait for steady heartbeats, kill one worker,
and time how fast the coordinator reports it failed, against a deadline.

Config section (spawn mode):
    {"heartbeat": {"coordinator": {"command": [...], "ready_line": "listening"},
                   "workers": {"count": 2, "command": [..., "{worker}", "{worker_id}", "{port}"]},
                   "events": {"log": "{run_dir}/events.ndjson", "heartbeat_topic": "worker_heartbeat",
                              "failure_topic": "worker_failed", "worker_field": "worker"},
                   "min_beats": 3, "stable_timeout": 10, "kill": "first", "signal": "SIGKILL",
                   "deadline": 5, "grace": 2}}
{run_dir}, {run_id}, {port} (a free port, chosen before anything starts), and in a
worker's command {worker} and {worker_id} (also written to {run_dir}/logs/NAME.id).
Every process's output goes to {run_dir}/logs/NAME.log; run_dir is kept.
"""

from __future__ import annotations

import collections
import os
import signal as signals
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional

from checks import CheckError, ConfigError, steps
from checks.config import Fields
from checks.lifecycle import Interrupted
from checks.model import Outcome, Planned, Result

NAME = "heartbeat"
SCENARIO = ("coordinator", "workers", "kill", "detect", "grace", "stop")
MAX_WORKERS = 256
_POLL_S = 0.02  # how often the event logs are read: the tool's observation lag


class Spec(collections.namedtuple("Spec", "run_dir run_id port coordinator workers events min_beats "
                                          "stable_timeout kill signum deadline grace ready_timeout bound")):
    __slots__ = ()


def add_arguments(parser) -> None:
    """No flags of its own yet: spawn mode is configured in the heartbeat section."""


def from_args(args, configured=None):
    return None


def load(section, where: str = NAME) -> Spec:
    from checks.probes.events import Events

    fields = Fields(section, where)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()
    run_dir = os.path.abspath(fields.text("run_dir", "./data/smoke/{run_id}").replace("{run_id}", run_id))
    port = _free_port()
    builtins = {"run_dir": run_dir, "run_id": run_id, "port": port}
    coordinator = Fields(fields.get("coordinator", (dict,)), fields.at("coordinator"))
    coordinator_argv = _argv(coordinator, builtins)
    ready_line = coordinator.text("ready_line", None)
    coordinator.done()
    workers = Fields(fields.get("workers", (dict,)), fields.at("workers"))
    count = workers.integer("count", 2, 1, MAX_WORKERS)
    names = workers.strings("names", ["w%d" % (i + 1) for i in range(count)])
    if len(names) != count or len(set(names)) != count:
        raise ConfigError("%s: give %d unique names, one per worker" % (workers.at("names"), count))
    worker_table = workers.get("command", (list,))
    workers.done()
    worker_argvs = []
    for name in names:
        worker_id = _worker_id()
        filled = steps.fill(worker_table, dict(builtins, worker=name, worker_id=worker_id))
        worker_argvs.append((name, worker_id, [str(word) for word in filled]))
    events = Fields(fields.get("events", (dict,)), fields.at("events"))
    log = events.text("log").replace("{run_dir}", run_dir)
    patterns = {kind: events.text(kind + "_pattern", None) for kind in ("heartbeat", "failure")}
    if any(patterns.values()):
        matcher = Events(patterns={k: v for k, v in patterns.items() if v}, where=events.at(""))
    else:
        matcher = Events(topics={"heartbeat": events.text("heartbeat_topic", "worker_heartbeat"),
                                 "failure": events.text("failure_topic", "worker_failed")},
                         worker_field=events.text("worker_field", "worker_id"))
    events.done()
    kill = fields.text("kill", "first")
    if kill != "first" and kill not in names:
        raise ConfigError("%s: %r is no worker's name (workers: %s)" % (fields.at("kill"), kill, ", ".join(names)))
    signal_name = fields.text("signal", "SIGKILL")
    signum = getattr(signals, signal_name if signal_name.startswith("SIG") else "SIG" + signal_name, None)
    if not isinstance(signum, int):
        raise ConfigError("%s: %r is not a signal" % (fields.at("signal"), signal_name))
    deadline = fields.number("deadline", 5, 0.01, 3600)
    bound = _timing_contract(fields, deadline)
    spec = Spec(run_dir, run_id, port, (coordinator_argv, ready_line), worker_argvs, (log, matcher),
                fields.integer("min_beats", 3, 1, 10000), fields.number("stable_timeout", 10, 0.1, 3600),
                names[0] if kill == "first" else kill, signum, deadline,
                fields.number("grace", 2, 0, 3600), fields.number("ready_timeout", 10, 0.1, 3600), bound)
    fields.done()
    return spec


def _timing_contract(fields: Fields, deadline: float) -> Optional[float]:
    """The detection bound the system promises (failure_timeout + clock_skew), after checking
    that its timings can keep that promise at all; None when none are given."""
    interval = fields.number("heartbeat_interval", None, 0.001, 3600)
    timeout = fields.number("failure_timeout", None, 0.001, 3600)
    skew = fields.number("clock_skew", None, 0, 3600)
    fence = fields.number("self_fence_timeout", None, 0.001, 3600)
    if fence is not None and timeout is not None and not fence < timeout:
        raise ConfigError("%s: self_fence_timeout (%gs) must be below failure_timeout (%gs), or a worker is "
                          "declared failed while it still acts" % (fields.at("self_fence_timeout"), fence, timeout))
    if skew is not None and interval is not None and not skew < 2 * interval:
        raise ConfigError("%s: clock_skew (%gs) must be below 2 x heartbeat_interval (%gs)"
                          % (fields.at("clock_skew"), skew, 2 * interval))
    if timeout is None:
        return None
    bound = timeout + (skew or 0)
    if deadline < bound:
        raise ConfigError("%s: the deadline (%gs) must be at least failure_timeout + clock_skew (%gs): the "
                          "system may take that long by design" % (fields.at("deadline"), deadline, bound))
    return bound


def _argv(fields: Fields, builtins: Dict[str, Any]) -> List[str]:
    argv = fields.strings("command")
    if not argv:
        raise ConfigError("%s: the command is empty" % fields.at("command"))
    return [str(steps.fill(word, builtins)) for word in argv]


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker_id() -> str:
    """Sortable by time, unique: milliseconds then randomness, as a ULID is."""
    return "%012x%s" % (int(time.time() * 1000), os.urandom(5).hex())


def plan(spec: Spec) -> List[Planned]:
    targets = {"coordinator": " ".join(spec.coordinator[0]),
               "workers": "%d workers, %d beats each within %gs" % (len(spec.workers), spec.min_beats,
                                                                    spec.stable_timeout),
               "kill": "%s to %s" % (signals.Signals(spec.signum).name, spec.kill),
               "detect": "a failure event for %s within %gs" % (spec.kill, spec.deadline),
               "grace": "%gs with no failure event for the others" % spec.grace,
               "stop": "SIGTERM, then SIGKILL; nothing left"}
    return [Planned(step, NAME, "heartbeat", targets[step]) for step in SCENARIO]


def run(spec: Spec, ctx) -> Outcome:
    from checks.probes import proc
    from checks.probes.events import Follow

    os.makedirs(os.path.join(spec.run_dir, "logs"), exist_ok=True)
    results: List[Result] = []
    metrics: Dict[str, Any] = {"run_dir": spec.run_dir}
    started: Dict[str, Any] = {}
    log, matcher = spec.events
    follow = Follow(log)
    seen: List[Any] = []

    targets = {step.name: step.target for step in plan(spec)}

    def record(step: str, status: str, message: str, began: float, **facts) -> bool:
        results.append(Result(step, NAME, "heartbeat", status, ctx.redact(message), (time.monotonic() - began) * 1000,
                              1, facts=facts, target=targets[step]))
        return status == "pass"

    def read() -> List[Any]:
        new = matcher.parse(follow.lines(), time.monotonic() + 1)
        seen.extend(new)
        return new

    def spawn(name: str, argv: List[str]):
        try:
            started[name] = proc.spawn(argv, os.path.join(spec.run_dir, "logs", name + ".log"), ctx.cleanup)
        except CheckError as exc:
            raise _Stop(name, str(exc))

    ids = {name: worker_id for name, worker_id, _ in spec.workers}
    interrupted: Optional[Interrupted] = None
    began = time.monotonic()  # of the step under way: a failing step's result has its duration
    try:
        spawn("coordinator", spec.coordinator[0])
        problem = _not_ready(started["coordinator"], spec.coordinator[1], spec.ready_timeout)
        if problem:
            raise _Stop("coordinator", problem)
        record("coordinator", "pass", "", began, pid=started["coordinator"].pid)

        began = time.monotonic()
        for name, worker_id, argv in spec.workers:
            with open(os.path.join(spec.run_dir, "logs", name + ".id"), "w") as fh:
                fh.write(worker_id + "\n")
            spawn(name, argv)
        beats = collections.defaultdict(list)
        ends = began + spec.stable_timeout
        while time.monotonic() < ends and any(len(beats[n]) < spec.min_beats for n in ids):
            for event in read():
                name = _who(event.worker, ids)
                if name and event.kind == "heartbeat":
                    beats[name].append(event.seen)
            time.sleep(_POLL_S)
        quiet = [n for n in ids if len(beats[n]) < spec.min_beats]
        steady_s = time.monotonic() - began
        intervals = {n: round((b[-1] - b[0]) / (len(b) - 1), 3) for n, b in beats.items() if len(b) > 1}
        metrics.update(steady_s=round(steady_s, 3), beat_interval_s=intervals)
        if quiet:
            raise _Stop("workers", "no steady heartbeats within %gs from %s (%s)" % (
                spec.stable_timeout, ", ".join(quiet), ", ".join("%s: %d" % (n, len(beats[n])) for n in quiet)))
        record("workers", "pass", "", began, beats={n: len(b) for n, b in beats.items()}, intervals_s=intervals)

        began = time.monotonic()
        victim = started[spec.kill]
        victim.signal(spec.signum)
        killed_at, killed_wall = time.monotonic(), time.time()
        record("kill", "pass", "", began, pid=victim.pid, signal=signals.Signals(spec.signum).name)
        began = killed_at

        detected = None
        while detected is None and time.monotonic() < killed_at + spec.deadline:
            for event in read():
                if event.kind == "failure" and _who(event.worker, ids) == spec.kill:
                    detected = event
                elif event.kind == "failure":
                    raise _Stop("detect", "false positive: %s reported failed, but %s was killed"
                                % (_who(event.worker, ids) or event.worker, spec.kill))
            time.sleep(_POLL_S)
        if detected is None:
            raise _Stop("detect", "no failure event for %s within the deadline of %gs" % (spec.kill, spec.deadline))
        detection_s = detected.seen - killed_wall
        facts = {"detection_s": round(detection_s, 3), "deadline_s": spec.deadline}
        if spec.bound is not None:
            facts["expected_bound_s"] = spec.bound
        if detected.at is not None:
            facts["event_detection_s"] = round(detected.at - killed_wall, 3)
        metrics.update(facts)
        record("detect", "pass", "", began, **facts)

        began = time.monotonic()
        survivors = [n for n in ids if n != spec.kill]
        after = {n: 0 for n in survivors}
        while time.monotonic() < began + spec.grace:
            for event in read():
                name = _who(event.worker, ids)
                if event.kind == "failure" and name in after:
                    raise _Stop("grace", "false positive: %s reported failed while it was alive" % name)
                if event.kind == "heartbeat" and name in after:
                    after[name] += 1
            time.sleep(_POLL_S)
        silent = [n for n, count in after.items() if not count and spec.grace >= 1]
        if silent:
            raise _Stop("grace", "survivors stopped beating: %s" % ", ".join(silent))
        record("grace", "pass", "", began, beats=after)
    except _Stop as stop:
        record(stop.step if stop.step in SCENARIO else "workers", "fail", stop.message, began)
    except Interrupted as exc:  # stopped below like any other end; the report keeps what was done
        interrupted = exc
    finally:
        follow.close()
        began = time.monotonic()
        left = [name for name, spawned in started.items() if spawned.stop() is None]
        if not any(r.name == "stop" for r in results):
            record("stop", "fail" if left else "pass", "still running: %s" % ", ".join(left) if left else "", began,
                   stopped=sorted(started))
    done = {r.name for r in results}
    why = "interrupted" if interrupted else "skipped: an earlier step failed"
    results += [Result(step, NAME, "heartbeat", "skip", why) for step in SCENARIO if step not in done]
    results.sort(key=lambda r: SCENARIO.index(r.name))
    if interrupted:
        interrupted.results = results
        raise interrupted
    return Outcome(results, metrics)


class _Stop(Exception):
    def __init__(self, step: str, message: str):
        super().__init__(message)
        self.step, self.message = step, message


def _who(worker: str, ids: Dict[str, str]) -> Optional[str]:
    """The worker an event names, by its name or its id."""
    if worker in ids:
        return worker
    return next((name for name, worker_id in ids.items() if worker_id == worker), None)


def _not_ready(spawned, line: Optional[str], timeout: float) -> Optional[str]:
    """Why the process is not ready within timeout (it exited; its log never showed line), or None."""
    from checks.kinds.spawn import tail

    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if not spawned.running():
            return "exited with code %s; its log ends: %s" % (spawned.proc.returncode, tail(spawned.log_path))
        if line is None:
            return None
        try:
            with open(spawned.log_path, "rb") as fh:
                if line.encode() in fh.read(1 << 20):
                    return None
        except OSError:
            pass
        time.sleep(_POLL_S)
    return "not ready within %gs: no %r in its log" % (timeout, line)
