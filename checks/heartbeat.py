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

import collections
import os
import re
import signal as signals
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

from checks import CheckError, ConfigError, fsio, procfs, steps
from checks.config import Fields
from checks.lifecycle import Interrupted
from checks.model import Outcome, Planned, Result, cut

NAME = "heartbeat"
FLAGS = "--pid or --pidfile with --log and --failure-pattern"
DEADLINE_HELP = ("seconds from the kill to the failure event (the detection deadline, default: the config's, "
                 "else 5; every other wait has its own timeout)")
SCENARIO = ("attach", "coordinator", "workers", "kill", "detect", "grace", "stop")
MAX_WORKERS = 256
MAX_TEMPLATE = 1024 * 1024
POLL_S = 0.02  # how often the event logs are read: the tool's observation lag
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_BUILD_TIMEOUT_S = 600.0  # a cold build can take minutes
# read left to right, as str.format does: {{ and }} are braces, ${NAME} is the shell's, {word} ours
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\$\{\w+\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TIMINGS = ("heartbeat_interval", "failure_timeout", "clock_skew", "self_fence_timeout")


class Process(collections.namedtuple("Process", "name argv env cwd files ready_line ready_port ready_timeout "
                                                "worker_id dir")):
    """One process to spawn, placeholders filled; files: [(path, text)] from its templates."""

    __slots__ = ()


class Spec(collections.namedtuple("Spec", "run_dir run_id preflight build coordinators workers workers_first "
                                          "logs matcher quorum min_beats stable_timeout kill signum deadline "
                                          "grace bound attach")):
    """attach: (pid, where it came from, its start time) in attach mode, else None (spawn mode)."""

    __slots__ = ()


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


def from_args(args, configured: Optional[Spec] = None) -> Optional[Spec]:
    """Attach mode from the flags; or the configured spec with --deadline, --signal, --grace,
    --min-beats, --stable-timeout and --quorum applied; None when no flag says anything."""
    attaching = [name for name in _ATTACH_FLAGS if getattr(args, name) not in (None, [])]
    if configured is not None:
        changed = {key: getattr(args, key) for key in _OVERRIDES if getattr(args, key) is not None}
        if args.signal:
            changed["signum"] = _signal(args.signal, "--signal")
        if changed.get("deadline", 1) < 0.01:
            raise ConfigError("--deadline: must be at least 0.01 seconds, got %g" % changed["deadline"])
        if "deadline" in changed and configured.bound is not None and changed["deadline"] < configured.bound:
            raise ConfigError("--deadline: %gs is below failure_timeout + clock_skew (%gs): the system may take that "
                              "long by design" % (changed["deadline"], configured.bound))
        if changed.get("quorum", 0) > len(configured.logs):
            raise ConfigError("--quorum: %d detectors must report, but the config gives %d log%s"
                              % (changed["quorum"], len(configured.logs), "" if len(configured.logs) == 1 else "s"))
        return configured._replace(**changed) if changed else None
    if not attaching:  # the overrides alone change the configured run (the second call)
        return None
    if args.config:
        raise ConfigError("--%s attaches to a running system, described by the flags; --config describes one in a "
                          "file: use one or the other" % attaching[0].replace("_", "-"))
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


def load(section, where: str = NAME) -> Spec:
    """A Spec from the config's section; every placeholder and template is checked here."""
    fields = Fields(section, where)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()
    run_dir = os.path.abspath(_filled(fields.path("run_dir", "./data/smoke/{run_id}"), {"run_id": run_id},
                                      fields.at("run_dir")))
    builtins: Dict[str, Any] = {"run_dir": run_dir, "run_id": run_id}
    deadline = fields.number("deadline", 5, 0.01, 3600)
    bound = _timing_contract(fields, deadline)
    # the system's timings as placeholders, so a coordinator's --timeout and failure_timeout are one number
    builtins.update((key, fields.data[key]) for key in _TIMINGS if key in fields.data)
    builtins["deadline"] = deadline
    attach = _attach(fields)
    if attach is None:
        if "expect_worker" in section:
            raise ConfigError("%s: expect_worker is for attach mode (pid, pidfile); in spawn mode, kill names the "
                              "worker to kill" % fields.at("expect_worker"))
        coordinators, workers, first = _processes(fields, builtins)
        names = [p.name for p in workers]
    else:
        for key in ("coordinator", "workers"):
            if key in section:
                raise ConfigError("%s: attach mode (pid, pidfile) spawns nothing: remove %s" % (fields.at(key), key))
        coordinators, workers, first = [], [], False
        names = [fields.text("expect_worker", "")]
        if not names[0]:
            raise ConfigError("%s: give the name the failure event gives the killed process (expect_worker)"
                              % fields.at("expect_worker"))
    preflight = _steps(fields, "preflight", builtins, None)
    build = _steps(fields, "build", builtins, _BUILD_TIMEOUT_S)
    logs, matcher, quorum = _events(fields, builtins, attach is not None,
                                    [p.name for p in coordinators + workers])
    kill = names[0] if attach else fields.text("kill", "first")
    if kill == "first" and kill not in names:
        kill = names[0]
    if kill not in names:
        raise ConfigError("%s: %r is no worker's name (workers: %s)" % (fields.at("kill"), kill, ", ".join(names)))
    signum = _signal(str(fields.get("signal", (str, int), "SIGKILL")), fields.at("signal"))
    if attach is None:
        _check_writable(run_dir, fields.at("run_dir"))
    spec = Spec(run_dir, run_id, preflight, build, coordinators, workers, first, logs, matcher, quorum,
                fields.integer("min_beats", 3, 0, 10000),
                fields.number("stable_timeout", 10, 0.1, 3600), kill, signum, deadline,
                fields.number("grace", 2, 0, 3600), bound, attach)
    fields.done()
    return spec


def _check_writable(run_dir: str, where: str) -> None:
    """run_dir, or the nearest of its parents that exists, is a directory we may write in,
    and not / or a system tree (a run writes logs/ and data/ there)."""
    real = os.path.realpath(run_dir)
    if real == "/" or any(real == top or real.startswith(top + "/") for top in ("/proc", "/sys", "/dev")):
        raise ConfigError("%s: %s is no place for a run's files: give a directory of its own" % (where, run_dir))
    path = run_dir
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError("%s: cannot create %s: %s is not a directory this user may write in"
                          % (where, run_dir, path))


def _signal(name: str, where: str) -> int:
    """A signal by name (SIGKILL, KILL, kill) or number; one that Python cannot name (glibc's
    own 32 and 33) or 0 (which sends nothing) is a config error."""
    text = name.strip().upper()
    number = int(text) if text.isdigit() else getattr(signals, text if text.startswith("SIG") else "SIG" + text, None)
    try:
        if isinstance(number, bool) or not isinstance(number, int) or text.startswith("SIG_") or number == 0:
            raise ValueError
        return int(signals.Signals(number))
    except ValueError:
        raise ConfigError("%s: %r is not a signal to send (e.g. SIGKILL, SIGTERM, SIGSTOP, 9)" % (where, name))


def _attach(fields: Fields) -> Optional[Tuple[int, str, Optional[int]]]:
    """(pid, where it came from, its start time) in attach mode, else None. A pidfile that cannot be read is
    a config error; a pid that is not running is the run's failure (exit 1, said by attach)."""
    from checks.probes import proc

    pidfile = fields.path("pidfile", None)
    pid = fields.integer("pid", None, 2, proc.PID_MAX)
    if pid is not None and pidfile is not None:
        raise ConfigError("%s: give pid or pidfile, not both" % fields.at("pid"))
    if pidfile is not None:
        try:
            text = proc.read_small(pidfile, 64).decode("ascii", "replace").strip()
        except CheckError as exc:
            raise ConfigError("%s: %s" % (fields.at("pidfile"), exc))
        if not text.isdigit() or not 1 < int(text) <= proc.PID_MAX:
            raise ConfigError("%s: %s holds %r, not a pid" % (fields.at("pidfile"), pidfile, text[:20]))
        pid, source = int(text), "pid %s from %s" % (text, pidfile)
    elif pid is not None:
        source = "pid %d" % pid
    else:
        return None
    if pid in procfs.ancestors():
        raise ConfigError("%s: pid %d is smoke.py itself or one of the processes that started it"
                          % (fields.at("pidfile" if pidfile else "pid"), pid))
    return pid, source, procfs.start_time(pid)  # known from now: a pid reused later is not the one meant


def _processes(fields: Fields, builtins: Dict[str, Any]) -> Tuple[List[Process], List[Process], bool]:
    """The coordinators and the workers, ports chosen and placeholders filled."""
    table = fields.get("coordinator", (dict, list))
    coordinator_tables = table if isinstance(table, list) else [table]
    if not coordinator_tables:
        raise ConfigError("%s: give at least one coordinator" % fields.at("coordinator"))
    plural = isinstance(table, list)
    coordinator_fields, names = [], []
    for i, one in enumerate(coordinator_tables):
        at = "%s[%d]" % (fields.at("coordinator"), i) if plural else fields.at("coordinator")
        if not isinstance(one, dict):
            raise ConfigError("%s: expected a table (name, command, ready_line...)" % at)
        own = Fields(one, at)
        names.append(_name(own, None if plural else "coordinator"))
        coordinator_fields.append(own)
    workers = Fields(fields.get("workers", (dict,)), fields.at("workers"))
    given = workers.strings("names", None)
    if given is not None and not 0 < len(given) <= MAX_WORKERS:
        raise ConfigError("%s: give 1 to %d names, one per worker" % (workers.at("names"), MAX_WORKERS))
    count = workers.integer("count", len(given) if given else 2, 1, MAX_WORKERS)
    worker_names = given if given is not None else ["w%d" % (i + 1) for i in range(count)]
    if len(worker_names) != count or len(set(worker_names)) != count:
        raise ConfigError("%s: give %d unique names, one per worker" % (workers.at("names"), count))
    for name in worker_names:
        _check_name(name, workers.at("names"))
    clash = sorted(set(names) & set(worker_names)) or sorted(n for n in set(names) if names.count(n) > 1)
    if clash:
        raise ConfigError("%s: the name %r is used twice; every process needs its own (its log is "
                          "logs/NAME.log)" % (fields.at("coordinator"), clash[0]))
    ports = _free_ports(len(names) + count)
    builtins = dict(builtins, port=ports[0])
    builtins.update(("port_" + n.replace("-", "_"), p) for n, p in zip(names + worker_names, ports))
    coordinators = [_process(own, name, builtins, port, None)
                    for own, name, port in zip(coordinator_fields, names, ports)]
    first = workers.flag("start_first", False)
    shared = dict(workers.data)
    for key in ("count", "names", "start_first"):
        shared.pop(key, None)
    workers.seen.update(shared)  # each worker's own Fields reads them, and rejects what it does not know
    workers.done()
    worker_processes = [_process(Fields(shared, workers.where), name, builtins, port, _worker_id())
                        for name, port in zip(worker_names, ports[len(names):])]
    return coordinators, worker_processes, first


def _name(fields: Fields, default: Optional[str]) -> str:
    name = fields.text("name", default)
    if name is None:
        raise ConfigError("%s: each coordinator in a list needs a name" % fields.at("name"))
    _check_name(name, fields.at("name"))
    return name


def _check_name(name: str, where: str) -> None:
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise ConfigError("%s: %r: a process name is 1-64 letters, digits, '_' or '-' (it names its log file)"
                          % (where, name))


def _process(fields: Fields, name: str, builtins: Dict[str, Any], port: int, worker_id: Optional[str]) -> Process:
    directory = os.path.join(builtins["run_dir"], "data", name)
    own = dict(builtins, name=name, my_port=port, dir=directory)
    if worker_id is not None:
        own.update(worker=name, worker_id=worker_id)
    argv = [str(word) for word in _filled(fields.strings("command"), own, fields.at("command"))]
    if not argv or not argv[0]:
        raise ConfigError("%s: the command is empty" % fields.at("command"))
    from checks.config import check_os_text
    for i, word in enumerate(argv):
        if "\0" in word:
            check_os_text(word, "%s[%d]" % (fields.at("command"), i))
    env = fields.get("env", (dict,), {})
    for key, value in env.items():
        if not isinstance(value, str) or not key or "=" in key or "\0" in key + value:
            raise ConfigError("%s.%s: a variable's value is a string, its name not empty, with no '=' or NUL"
                              % (fields.at("env"), key))
    env = {key: str(value) for key, value in _filled(env, own, fields.at("env")).items()}
    cwd = fields.path("cwd", None)
    files = [_template(item, own, "%s[%d]" % (fields.at("templates"), i))
             for i, item in enumerate(fields.get("templates", (list,), []))]
    ready_port = fields.get("ready_port", (int, str), None)
    if ready_port is not None:
        ready_port = _filled(ready_port, own, fields.at("ready_port"))
        if isinstance(ready_port, bool) or not str(ready_port).isdigit() or not 0 < int(ready_port) < 65536:
            raise ConfigError("%s: %r is not a TCP port (1-65535; {my_port} is this process's)"
                              % (fields.at("ready_port"), ready_port))
        ready_port = int(ready_port)
    ready_line = fields.text("ready_line", None)
    process = Process(name, argv, env, cwd and str(_filled(cwd, own, fields.at("cwd"))), files, ready_line, ready_port,
                      fields.number("ready_timeout", 10, 0.1, 3600), worker_id, directory)
    fields.done()
    return process


def _filled(value: Any, variables: Dict[str, Any], where: str) -> Any:
    """value with its {placeholders} filled; one we do not fill is a config error, not a literal."""
    for text in _texts(value):
        for var in steps.PLACEHOLDER.findall(text):
            if var not in variables:
                raise ConfigError("%s: {%s} is not a placeholder here (known: %s)"
                                  % (where, var, ", ".join(sorted(variables))))
    return steps.fill(value, variables)


def _texts(value: Any) -> List[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _texts(item)]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    return []


def _template(item: Any, variables: Dict[str, Any], where: str) -> Tuple[str, str]:
    """(where the copy goes, its text): a file copied per process with its placeholders filled."""
    if not isinstance(item, dict):
        raise ConfigError("%s: expected a table {\"from\": FILE, \"to\": \"{dir}/NAME\"}" % where)
    fields = Fields(item, where)
    source = fields.path("from")
    target = os.path.abspath(str(_filled(fields.path("to"), variables, fields.at("to"))))
    fields.done()
    if not target.startswith(variables["run_dir"] + os.sep):
        raise ConfigError("%s: %s is outside run_dir (%s): a template is copied into the run's own directory, "
                          "e.g. \"{dir}/NAME.conf\"" % (fields.at("to"), target, variables["run_dir"]))
    from checks.probes import proc
    try:
        data = proc.read_small(source, MAX_TEMPLATE + 1)  # a FIFO would block the load
    except CheckError as exc:
        raise ConfigError("%s: %s" % (fields.at("from"), exc))
    if len(data) > MAX_TEMPLATE:
        raise ConfigError("%s: %s is over %d bytes: a template, not data" % (fields.at("from"), source, MAX_TEMPLATE))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("%s: %s is not UTF-8 text" % (fields.at("from"), source))
    lines = []
    for number, line in enumerate(text.splitlines(True), 1):
        def one(match, number=number):
            word = match.group(1)
            if word is None:  # {{, }} or a shell's ${NAME}
                return match.group()[0] if match.group() in ("{{", "}}") else match.group()
            if word not in variables:
                raise ConfigError("%s:%d: {%s} is not a placeholder here (known: %s; {{ and }} are literal braces)"
                                  % (source, number, word, ", ".join(sorted(variables))))
            return str(variables[word])
        lines.append(_TEMPLATE_TOKEN.sub(one, line))
    return target, "".join(lines)


def _steps(fields: Fields, key: str, builtins: Dict[str, Any], timeout: Optional[float]) -> List[steps.Step]:
    """preflight or build: check tables (a command by default) run in order before anything starts."""
    from checks.kinds import STEP_KINDS

    tables = fields.get(key, (list,), [])
    loaded, names = [], set()
    for i, table in enumerate(tables):
        at = "%s[%d]" % (fields.at(key), i)
        if not isinstance(table, dict):
            raise ConfigError("%s: expected a table (name, command, expect)" % at)
        table = dict(table)
        table.setdefault("kind", "command")
        if timeout is not None:
            table.setdefault("timeout", timeout)
        name = table.pop("name", None)
        if name is None:
            command = table.get("command")
            words = command.split() if isinstance(command, str) else command
            name = os.path.basename(str(words[0])) if isinstance(words, list) and words else str(table["kind"])
        if not isinstance(name, str) or not name or name in names:
            raise ConfigError("%s.name: give each %s step a unique name (%r is %s)"
                              % (at, key, name, "taken" if name in names else "not a name"))
        names.add(name)
        if table["kind"] not in STEP_KINDS or table["kind"] == "spawn":
            raise ConfigError("%s.kind: %r cannot be a %s step (a check kind such as command, tcp, http)"
                              % (at, table["kind"], key))
        loaded.append(steps.load(table, at, NAME, name, set(builtins), builtins))
    return loaded


def _events(fields: Fields, builtins: Dict[str, Any], attach: bool, processes: List[str]):
    """(logs, matcher, quorum) from the events table; processes: the names of the spawned ones."""
    from checks.probes.events import Events

    events = Fields(fields.get("events", (dict,)), fields.at("events"))
    logs = events.strings("logs", None)
    one = events.path("log", None)
    if (logs is None) == (one is None):
        raise ConfigError("%s: give log (one file) or logs (one per detector)" % events.at("log"))
    at = events.at("log" if one is not None else "logs")
    if logs is not None and not logs:
        raise ConfigError("%s: give at least one log" % at)
    if any(not log for log in logs or [one]):
        raise ConfigError("%s: a log is a file's path, not empty" % at)
    logs = [os.path.abspath(str(_filled(log, builtins, at))) for log in (logs or [one])]
    if len({_identity(log) for log in logs}) != len(logs):
        raise ConfigError("%s: a log is given twice (or through a link): each detector counts once" % at)
    if attach:
        for log in logs:  # the system is running: its logs exist now
            if not os.path.isfile(log) or not os.access(log, os.R_OK):
                raise ConfigError("%s: %s is not a readable file" % (at, log))
    else:  # a log of ours (run_dir/logs/NAME.log) must be a process's
        ours = os.path.join(builtins["run_dir"], "logs") + os.sep
        for log in logs:
            name = log[len(ours):-len(".log")] if log.startswith(ours) and log.endswith(".log") else None
            if name is not None and name not in processes:
                raise ConfigError("%s: %s is the log of no process (processes: %s)"
                                  % (at, log, ", ".join(processes)))
    quorum = events.integer("quorum", len(logs), 1, 1000)
    if quorum > len(logs):
        raise ConfigError("%s: %d detectors must report, but %s given (one log per detector)" % (
            events.at("quorum"), quorum, "only 1 log is" if len(logs) == 1 else "only %d logs are" % len(logs)))
    patterns = {kind: events.text(kind + "_pattern", None) for kind in ("heartbeat", "failure")}
    ndjson = [key for key in ("heartbeat_topic", "failure_topic", "worker_field", "topic_field", "time_field")
              if key in events.data]
    if any(patterns.values()):
        if not patterns["failure"]:
            raise ConfigError("%s: a heartbeat_pattern needs a failure_pattern too" % events.at("failure_pattern"))
        if ndjson:
            raise ConfigError("%s: %s is for NDJSON events; with patterns, the group (?P<worker>...) names the "
                              "worker: give one or the other" % (events.at(ndjson[0]), ndjson[0]))
        matcher = Events(patterns={k: v for k, v in patterns.items() if v}, where=events.where)
    elif attach and "failure_topic" not in events.data:
        raise ConfigError("%s: give failure_pattern (a line, its group (?P<worker>...) naming who failed), or "
                          "failure_topic for NDJSON events" % events.at("failure_pattern"))
    else:
        matcher = Events(topics={"heartbeat": events.text("heartbeat_topic", "worker_heartbeat"),
                                 "failure": events.text("failure_topic", "worker_failed")},
                         worker_field=events.text("worker_field", "worker_id"),
                         topic_field=events.text("topic_field", "topic"), time_field=events.text("time_field", None))
    events.done()
    return logs, matcher, quorum


def _identity(path: str):
    """What a path names: the file itself (a hard link or a symlink is the same file)."""
    try:
        found = os.stat(path)
        return found.st_dev, found.st_ino
    except OSError:
        return os.path.realpath(path)


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


def _free_ports(count: int) -> List[int]:
    """count distinct ports free now: all held open until all are chosen."""
    import socket
    held = []
    try:
        for _ in range(count):
            sock = socket.socket()
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


def _worker_id() -> str:
    """Sortable by time, unique: milliseconds then randomness, as a ULID is."""
    return "%012x%s" % (int(time.time() * 1000), os.urandom(5).hex())


def _scenario(spec: Spec) -> List[str]:
    left_out = ("coordinator",) + (() if _beats(spec) else ("workers",)) if spec.attach else ("attach",)
    return [step for step in SCENARIO if step not in left_out]


def plan(spec: Spec) -> List[Planned]:
    beats = ("%d beats each within %gs" % (spec.min_beats, spec.stable_timeout) if _beats(spec)
             else "ready (no heartbeat events to count)")
    victim = "%s (%s)" % (spec.kill, spec.attach[1]) if spec.attach else spec.kill
    detectors = "%d of %d detectors" % (spec.quorum, len(spec.logs)) if len(spec.logs) > 1 else "the detector"
    targets = {"attach": "%s is running; follow %s" % (spec.attach[1], ", ".join(spec.logs)) if spec.attach else "",
               "coordinator": "; ".join(" ".join(p.argv) for p in spec.coordinators),
               "workers": "%d worker%s, %s" % (len(spec.workers), "" if len(spec.workers) == 1 else "s", beats)
               if spec.workers else beats,
               "kill": "%s to %s" % (signals.Signals(spec.signum).name, victim),
               "detect": "a failure event for %s from %s within %gs" % (spec.kill, detectors, spec.deadline),
               "grace": "%gs with no failure event for anyone else" % spec.grace,
               "stop": "the killed process is gone" if spec.attach else "SIGTERM, then SIGKILL; nothing left"}
    planned = [step for prefix, loaded in (("preflight.", spec.preflight), ("build.", spec.build))
               for step in steps.plan(loaded, {"run_dir": spec.run_dir, "run_id": spec.run_id}, prefix)]
    planned += [Planned(step, NAME, "heartbeat", targets[step]) for step in _scenario(spec)]
    # one scenario, all or nothing: --only/--tag choose all of it or none, and every step is
    # critical, so no min_pass_rate can pass a detection that failed
    names = frozenset(step.name for step in planned)
    return [step._replace(severity="critical", needs=names - {step.name}, always=True) for step in planned]


def _beats(spec: Spec) -> bool:
    return spec.min_beats > 0 and bool(spec.matcher.topics or "heartbeat" in spec.matcher.patterns)


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
            raise _Stop(step, "deadline exceeded (--deadline %gs)" % self.ctx.deadline_s)

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
        from checks import lifecycle

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
            interrupted.results = self.results
            interrupted.metrics = {NAME: self.metrics}
            raise interrupted
        return Outcome(self.results, self.metrics)

    def prepare(self, prefix: str, loaded: List[steps.Step]) -> bool:
        """Preflight or build, in order; whether all passed (nothing is spawned after a failure)."""
        variables = {"run_dir": self.spec.run_dir, "run_id": self.spec.run_id}
        try:
            results, _ = steps.run(loaded, self.ctx, variables, prefix, ends=self.run_ends)
        except Interrupted as exc:
            exc.results = _as_fails(exc.results)
            raise
        # a program that is not there is what a preflight looks for: a fail (exit 1), not "could not evaluate"
        self.results += _as_fails(results)
        self.began = time.monotonic()
        return all(r.status in ("pass", "warn") for r in results)

    def scenario(self) -> None:
        spec = self.spec
        if spec.attach:
            self.victim = self.attach()
        else:
            try:
                os.makedirs(os.path.join(spec.run_dir, "logs"), exist_ok=True)
            except OSError as exc:
                raise _Stop("coordinator", "cannot create %s: %s" % (spec.run_dir, exc.strerror or exc), "error")
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
            try:
                os.makedirs(process.dir, exist_ok=True)
                for path, text in process.files:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    fsio.replace(path, text.encode("utf-8"), 0o644)
                if process.worker_id is not None:
                    fsio.replace(os.path.join(self.spec.run_dir, "logs", process.name + ".id"),
                                 (process.worker_id + "\n").encode(), 0o644)
            except OSError as exc:
                raise _Stop(step, "%s: cannot write %s: %s" % (process.name, exc.filename, exc.strerror or exc),
                            "error")
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
        try:
            self.victim.signal_all(self.spec.signum)
        except OSError as exc:
            raise _Stop("kill", "cannot send %s to pid %d: %s" % (signame, self.victim.pid, exc.strerror or exc),
                        "error")
        self.killed_at, self.killed_wall = time.monotonic(), time.time()
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
                if name == spec.kill:
                    detected.setdefault(log, event)
                else:
                    raise _Stop("detect", "false positive: %s reported failed, but %s was killed"
                                % (name or event.worker, spec.kill))
            self.alive("detect", (spec.kill,))
            time.sleep(POLL_S)
        if len(detected) < spec.quorum:
            self.out_of_time("detect")
            self.kept_up("detect")
            missing = [log for log in spec.logs if log not in detected]
            named = ["%s%s" % (self.shown(log), "" if os.path.exists(log) else " (never created)") for log in missing]
            raise _Stop("detect", "no failure event for %s within the deadline of %gs%s%s" % (
                spec.kill, spec.deadline, " from %d of the %d detectors (quorum %d): %s" % (
                    len(missing), len(spec.logs), spec.quorum, ", ".join(named))
                if len(spec.logs) > 1 else "" if os.path.exists(spec.logs[0]) else " (%s was never created)"
                % spec.logs[0], "" if detected else self.hint()))
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
            if "event_detection_s" in facts else "", "; expected within %gs" % spec.bound if spec.bound else "")
        self.record("detect", "pass", said, **facts)

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
        from checks import lifecycle
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


def _data_left(path: str, offset: int) -> bool:
    try:
        return os.path.getsize(path) > offset
    except OSError:
        return False
