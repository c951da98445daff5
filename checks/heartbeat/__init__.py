"""heartbeat: kill a worker and time how fast its failure is detected, against a deadline.

Spawn mode (the config's heartbeat section) boots what it tests:
    {"heartbeat": {"preflight": [{"command": ["python3", "--version"], "expect": ["version >= 3.11"]}],
                   "build": [{"command": ["make"], "timeout": 600}],
                   "coordinator": {"command": [...], "ready_line": "listening"},
                   "workers": {"count": 2, "command": [..., "{worker}", "{worker_id}", "{port}"]},
                   "events": {"log": "{run_dir}/events.ndjson", "worker_field": "worker_id"},
                   "min_beats": 3, "stable_timeout": 10, "kill": "first", "signal": "SIGKILL",
                   "deadline": 5, "grace": 2}}
`coordinator` may be a list (several detectors, and any other process the system needs),
each with a name. Placeholders: {run_dir}, {run_id}, {port} (the first coordinator's),
{port_NAME} for every process, and in each process's own command, env and templates
{name}, {my_port} (its port), {dir} (its own empty directory) and, for workers, {worker}
and {worker_id} (also written to {run_dir}/logs/NAME.id). Every port is free when chosen.
Every process's output goes to {run_dir}/logs/NAME.log; run_dir is kept.

Attach mode (`pid` or `pidfile`, or the flags) tests a system already running: nothing
is spawned, only the named process is signalled, and its logs are read from their end.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Optional

from checks import ConfigError
from checks.command import Command
from checks.heartbeat.spec import BOUND_SAID, NAME, Spec, _signal, load, plan

DEADLINE_HELP = ("seconds from the kill to the failure event (the detection deadline, default: the config's, "
                 "else 5; every other wait has its own timeout)")


def add_arguments(parser) -> None:
    from checks.config import bounded

    group = parser.add_argument_group("attach to a running system (nothing is spawned; only the killed process "
                                      "is ours)")
    group.add_argument("--pidfile", metavar="FILE", help="the process to kill, by its pidfile")
    group.add_argument("--pid", type=bounded(2, 4194304, integer=True), metavar="PID", help="the process to kill")
    group.add_argument("--log", action="append", default=[], metavar="FILE",
                       help="a detector's log, read from its end as it grows (repeatable: one per detector)")
    group.add_argument("--failure-pattern", metavar="REGEX",
                       help="a failure line, its group (?P<worker>...) naming who failed, e.g. "
                            "'\\+sdown master (?P<worker>\\S+)'")
    group.add_argument("--heartbeat-pattern", metavar="REGEX",
                       help="a heartbeat line (?P<worker>...): require --min-beats of them first")
    group.add_argument("--expect-worker", metavar="NAME",
                       help="the name the failure event must give the killed process (any other is a false "
                            "positive)")
    group.add_argument("--quorum", type=bounded(1, 1000, integer=True), metavar="N",
                       help="detectors (--log files) that must report the failure (default: all)")
    group.add_argument("--signal", metavar="SIG", help="what to send (default SIGKILL)")
    group.add_argument("--grace", type=bounded(0, 3600), metavar="S",
                       help="seconds after the detection during which any other failure is a false positive "
                            "(default 2)")
    group.add_argument("--min-beats", type=bounded(1, 10000, integer=True), metavar="N",
                       help="heartbeats required before the kill (default 3)")
    group.add_argument("--stable-timeout", type=bounded(0.1, 3600), metavar="S",
                       help="seconds to wait for them (default 10)")


_ATTACH_FLAGS = ("pid", "pidfile", "log", "failure_pattern", "heartbeat_pattern", "expect_worker")
_OVERRIDES = ("deadline", "grace", "min_beats", "stable_timeout", "quorum")  # these change a configured run too
# a field of the table the flags become -> the flag, for errors that name what the user typed
_FLAG_OF = {"events.logs": "--log", "events.log": "--log", "events.failure_pattern": "--failure-pattern",
            "events.failure": "--failure-pattern", "events.heartbeat_pattern": "--heartbeat-pattern",
            "events.heartbeat": "--heartbeat-pattern", "events.quorum": "--quorum", "events": "--log"}
_FLAGS_WHERE = "(flags)"


def from_args(args, secrets, configured: Optional[Spec] = None) -> Optional[Spec]:
    """Attach mode from the flags; or the configured spec with --deadline, --signal, --grace,
    --min-beats, --stable-timeout and --quorum applied; None when no flag says anything."""
    attaching = [name for name in _ATTACH_FLAGS if getattr(args, name) not in (None, [])]
    if attaching and args.config:
        raise ConfigError("--%s attaches to a running system, described by the flags; --config describes one in a "
                          "file: use one or the other" % attaching[0].replace("_", "-"))
    if configured is not None:
        changed = {key: getattr(args, key) for key in _OVERRIDES if getattr(args, key) is not None}
        if args.signal:
            changed["signum"] = _signal(args.signal, "--signal")
        if changed.get("deadline", 1) < 0.01:
            raise ConfigError("--deadline: must be at least 0.01 seconds, got %g" % changed["deadline"])
        if "deadline" in changed and configured.bound is not None and changed["deadline"] < configured.bound:
            raise ConfigError("--deadline: %gs is below %s (%gs): the system may take that long by design"
                              % (changed["deadline"], BOUND_SAID, configured.bound))
        if changed.get("quorum", 0) > len(configured.logs):
            raise ConfigError("--quorum: %d detectors must report, but the config gives %d log%s"
                              % (changed["quorum"], len(configured.logs), "" if len(configured.logs) == 1 else "s"))
        return configured._replace(**changed) if changed else None
    if not attaching:
        return None
    if args.pid is None and args.pidfile is None:
        raise ConfigError("--%s attaches to a running system: give the process to kill, --pid PID or --pidfile "
                          "FILE" % attaching[0].replace("_", "-"))
    if not args.log:
        raise ConfigError("--log: give the log of each detector that reports failures (--log FILE, repeatable)")
    if not args.heartbeat_pattern and (args.min_beats is not None or args.stable_timeout is not None):
        raise ConfigError("--%s counts heartbeats: give --heartbeat-pattern too"
                          % ("min-beats" if args.min_beats is not None else "stable-timeout"))
    table = {key: getattr(args, key) for key in ("pid", "pidfile", "expect_worker", "signal", "grace", "min_beats",
                                                 "stable_timeout", "deadline") if getattr(args, key) is not None}
    table["events"] = {key: value for key, value in (("logs", args.log), ("failure_pattern", args.failure_pattern),
                                                     ("heartbeat_pattern", args.heartbeat_pattern),
                                                     ("quorum", args.quorum)) if value}
    try:
        return load(table, _FLAGS_WHERE)
    except ConfigError as exc:  # name the flag the user typed, not the field it became
        raise ConfigError(re.sub(re.escape(_FLAGS_WHERE) + r"\.([\w.]+)", lambda m: _FLAG_OF.get(
            m.group(1), "--" + m.group(1).replace("_", "-")), str(exc)))


def run(spec: Spec, ctx):
    from checks.heartbeat import scenario
    return scenario.run(spec, ctx)


class Heartbeat(Command):
    NAME = NAME
    FLAGS = "--pid or --pidfile with --log and --failure-pattern"
    EXAMPLES = """  python3 smoke.py heartbeat --config cluster.json --format text  # spawn mode: the config's heartbeat
  python3 smoke.py heartbeat --pidfile /run/redis/redis-server.pid --log /var/log/redis/sentinel.log \\
      --failure-pattern '\\+sdown master (?P<worker>\\S+)' --expect-worker mymaster --deadline 5
"""
    DEADLINE_HELP = DEADLINE_HELP
    add_arguments = staticmethod(add_arguments)
    from_args = staticmethod(from_args)
    load = staticmethod(load)
    plan = staticmethod(plan)
    run = staticmethod(run)

    def flags_describe(self, args) -> bool:
        return any(getattr(args, name) not in (None, []) for name in _ATTACH_FLAGS)


COMMAND = Heartbeat()
