"""heartbeat's spec: its config section (or the flags') read and checked, placeholders and
templates filled, the timing contract, and the scenario it plans.

Everything a run will need is decided here, before anything is started: every port is
free when chosen, every template is read and filled, every placeholder is known.
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
from checks.config import Fields, same_name
from checks.model import Planned

NAME = "heartbeat"
SCENARIO = ("attach", "coordinator", "workers", "kill", "detect", "grace", "stop")
MAX_WORKERS = 256
MAX_TEMPLATE = 1024 * 1024
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_BUILD_TIMEOUT_S = 600.0  # a cold build can take minutes
# read left to right, as str.format does: {{ and }} are braces, ${NAME} is the shell's, {word} ours
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\$\{\w+\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TIMINGS = ("heartbeat_interval", "failure_timeout", "clock_skew", "self_fence_timeout", "scan_interval")
BOUND_SAID = "failure_timeout + clock_skew + scan_interval"
DEFAULT_SKEW_S = 1.0  # without clock_skew: an event stamped in whole seconds may read up to 1 s early


class Process(collections.namedtuple("Process", "name argv env cwd files ready_line ready_port ready_timeout "
                                                "worker_id dir fixed_port")):
    """One process to spawn, placeholders filled; files: [(path, text)] from its templates;
    fixed_port: the port its config gives it (checked free just before it starts), else None."""

    __slots__ = ()


class Spec(collections.namedtuple("Spec", "run_dir run_id preflight build coordinators workers workers_first "
                                          "logs matcher quorum min_beats stable_timeout kill signum deadline "
                                          "grace bound attach skew")):
    """attach: (pid, where it came from, its start time) in attach mode, else None (spawn mode).
    skew: how far an event's own timestamp may be off ours (clock_skew, else a second: a log
    that stamps whole seconds)."""

    __slots__ = ()


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
                fields.number("grace", 2, 0, 3600), bound, attach,
                fields.number("clock_skew", DEFAULT_SKEW_S, 0, 3600))
    fields.done()
    return spec


def _check_writable(run_dir: str, where: str) -> None:
    """run_dir, or the nearest of its parents that exists, is a directory we may write in,
    and not / or a system tree (a run writes logs/ and data/ there). A run_dir used again
    must be ours alone, and none above it one another user can change: they could swap it
    for theirs while the run or its processes use it by name (fsio.private_dir)."""
    real = os.path.realpath(run_dir)
    if real == "/" or any(real == top or real.startswith(top + "/") for top in ("/proc", "/sys", "/dev")):
        raise ConfigError("%s: %s is no place for a run's files: give a directory of its own" % (where, run_dir))
    path = run_dir
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError("%s: cannot create %s: %s is not a directory this user may write in"
                          % (where, run_dir, path))
    try:
        if path == run_dir:
            fsio.private_dir(run_dir, make=False)
        else:
            fsio.steady_dir(path)
    except OSError as exc:
        raise ConfigError("%s: %s" % (where, fsio.why(exc)))


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
        pid = _pid_to_kill(pidfile, fields.at("pidfile"))
        source = "pid %d from %s" % (pid, pidfile)
    elif pid is not None:
        source = "pid %d" % pid
    else:
        return None
    if pid in procfs.ancestors():
        raise ConfigError("%s: pid %d is smoke.py itself or one of the processes that started it"
                          % (fields.at("pidfile" if pidfile else "pid"), pid))
    return pid, source, procfs.start_time(pid)  # known from now: a pid reused later is not the one meant


def _pid_to_kill(pidfile: str, where: str) -> int:
    """The pid a pidfile names, read only where its writer could not aim the kill elsewhere
    (systemd's rule for PIDFile=): reached through no other user's link, a file of ours or root's
    in a directory of ours or root's, that no other user can write, names any process; a file or
    a directory of another user's (a service's own, /run/redis/redis-server.pid) only one of that
    user's processes, and only when no third user could have placed it. ConfigError otherwise."""
    import errno
    import stat as stat_

    from checks import fsio
    from checks.probes import proc

    try:
        dir_fd, name = fsio.locate(pidfile)  # another user's link on the way: Refused
        try:
            folder = os.fstat(dir_fd)
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        try:
            info = os.fstat(fd)
            if not stat_.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            text = os.read(fd, 64).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError("%s: cannot read %s: %s" % (where, pidfile, fsio.why(exc)))
    if not text.isdigit() or not 1 < int(text) <= proc.PID_MAX:
        raise ConfigError("%s: %s holds %r, not a pid" % (where, pidfile, text[:20]))
    pid = int(text)
    # who could have put this file here: its owner and its directory's, and anyone when either lets others write
    writers = {entry.st_uid for entry in (info, folder) if not fsio.ours_or_roots(entry)}
    loose = info.st_mode & 0o022 and (writers or fsio.written_by_others(info)) or \
        not folder.st_mode & stat_.S_ISVTX and (folder.st_mode & 0o022 if writers else fsio.written_by_others(folder))
    if loose or len(writers) > 1:
        raise ConfigError("%s: %s could be written by more than one user (file mode %04o, user %d; its directory "
                          "mode %04o, user %d): not trusted to name the process to kill" % (
                              where, pidfile, stat_.S_IMODE(info.st_mode), info.st_uid, stat_.S_IMODE(folder.st_mode),
                              folder.st_uid))
    owner = _uid_of(pid)
    if writers and owner is not None and owner not in writers:
        raise ConfigError("%s: %s is user %d's to write and names pid %d, a process of user %d: not killed (another "
                          "user's pidfile may name only that user's processes)" % (where, pidfile, min(writers), pid,
                                                                                   owner))
    return pid


def _uid_of(pid: int) -> Optional[int]:
    """The real user of a process, None when it is gone (attach then says it is not running)."""
    try:
        for line in fsio.read_head("/proc/%d/status" % pid, 4096).splitlines():
            if line.startswith(b"Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


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
    fixed = [_port(own.get("port", (int, str), None), own.at("port")) for own in coordinator_fields]
    fixed += _worker_ports(workers, count)
    ports = _choose_ports(fixed, _port_range(fields), fields.at("ports"))
    builtins = dict(builtins, port=ports[0])
    builtins.update(("port_" + n.replace("-", "_"), p) for n, p in zip(names + worker_names, ports))
    coordinators = [_process(own, name, builtins, port, None, given)
                    for own, name, port, given in zip(coordinator_fields, names, ports, fixed)]
    first = workers.flag("start_first", False)
    shared = dict(workers.data)
    for key in ("count", "names", "start_first", "port"):
        shared.pop(key, None)
    workers.seen.update(shared)  # each worker's own Fields reads them, and rejects what it does not know
    workers.done()
    worker_processes = [_process(Fields(shared, workers.where), name, builtins, port, _worker_id(), given)
                        for name, port, given in zip(worker_names, ports[len(names):], fixed[len(names):])]
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


def _process(fields: Fields, name: str, builtins: Dict[str, Any], port: int, worker_id: Optional[str],
             fixed_port: Optional[int]) -> Process:
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
        ready_port = _port(_filled(ready_port, own, fields.at("ready_port")), fields.at("ready_port"))
    ready_line = fields.text("ready_line", None)
    process = Process(name, argv, env, cwd and str(_filled(cwd, own, fields.at("cwd"))), files, ready_line, ready_port,
                      fields.number("ready_timeout", 10, 0.1, 3600), worker_id, directory, fixed_port)
    fields.done()
    return process


def _filled(value: Any, variables: Dict[str, Any], where: str) -> Any:
    """value with its {placeholders} filled; one we do not fill is a config error, not a literal."""
    for text in _texts(value):
        for var in steps.names(text):
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
    from checks.config import read_trusted
    try:  # what it says configures a process run as us: read as a config is (a FIFO, for 2 s at most)
        data = read_trusted(source, MAX_TEMPLATE + 1, 2.0, "the process started from it runs as you")
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (fields.at("from"), exc))
    except OSError as exc:
        raise ConfigError("%s: cannot read %s: %s" % (fields.at("from"), source, fsio.why(exc)))
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
        if not isinstance(name, str) or not name or same_name(name) in names:
            raise ConfigError("%s.name: give each %s step a unique name (%r is %s)"
                              % (at, key, name, "taken" if isinstance(name, str) and name else "not a name"))
        names.add(same_name(name))
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
    """The detection bound the system promises (failure_timeout + clock_skew + scan_interval:
    a detector that looks every scan_interval may see a timeout that long after it ran out),
    after checking that its timings can keep that promise at all; None without failure_timeout."""
    interval = fields.number("heartbeat_interval", None, 0.001, 3600)
    timeout = fields.number("failure_timeout", None, 0.001, 3600)
    skew = fields.number("clock_skew", None, 0, 3600)
    fence = fields.number("self_fence_timeout", None, 0.001, 3600)
    scan = fields.number("scan_interval", None, 0, 3600)
    if fence is not None and timeout is not None and not fence < timeout:
        raise ConfigError("%s: self_fence_timeout (%gs) must be below failure_timeout (%gs), or a worker is "
                          "declared failed while it still acts" % (fields.at("self_fence_timeout"), fence, timeout))
    if skew is not None and interval is not None and not skew < 2 * interval:
        raise ConfigError("%s: clock_skew (%gs) must be below 2 x heartbeat_interval (%gs)"
                          % (fields.at("clock_skew"), skew, 2 * interval))
    if timeout is None:
        return None
    bound = timeout + (skew or 0) + (scan or 0)
    if deadline < bound:
        raise ConfigError("%s: the deadline (%gs) must be at least %s (%gs): the system may take that long by "
                          "design" % (fields.at("deadline"), deadline, BOUND_SAID, bound))
    return bound


def _port(value: Any, where: str) -> Optional[int]:
    """A TCP port from a number or a string of digits (what ${PORT} gives), or None."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536):
        raise ConfigError("%s: %r is not a TCP port (1-65535; {my_port} is this process's)" % (where, value))
    return value


def _worker_ports(workers: Fields, count: int) -> List[Optional[int]]:
    """The workers' own ports: `port` is one (one worker) or a list, one per worker."""
    given = workers.get("port", (int, str, list), None)
    if not isinstance(given, list):
        if given is not None and count > 1:
            raise ConfigError("%s: %d workers cannot share port %s: give a list, one port per worker"
                              % (workers.at("port"), count, given))
        return [_port(given, workers.at("port"))] * count
    if len(given) != count:
        raise ConfigError("%s: give %d ports, one per worker" % (workers.at("port"), count))
    return [_port(one, "%s[%d]" % (workers.at("port"), i)) for i, one in enumerate(given)]


def _port_range(fields: Fields) -> Optional[Tuple[int, int]]:
    """`ports`: "20000-20100", where the ports not given are chosen; None: any free port."""
    text = fields.text("ports", None)
    if text is None:
        return None
    low, dash, high = text.partition("-")
    if not dash or not low.strip().isdigit() or not high.strip().isdigit() \
            or not 0 < int(low) <= int(high) < 65536:
        raise ConfigError("%s: %r is not a port range (e.g. \"20000-20100\")" % (fields.at("ports"), text))
    return int(low), int(high)


def _choose_ports(fixed: List[Optional[int]], span: Optional[Tuple[int, int]], where: str) -> List[int]:
    """A port for each process: its own where given, else one free now (from `span` when
    given), distinct from all others; those chosen are all held until all are."""
    import socket

    given = [port for port in fixed if port is not None]
    twice = sorted({port for port in given if given.count(port) > 1})
    if twice:
        raise ConfigError("%s: port %d is given to two processes" % (where, twice[0]))
    held: List[socket.socket] = []

    def hold(port: int) -> Optional[int]:
        """The port, held, or None when another holds it; a socket not to be had is this
        host's limit (ulimit -n), said as such, not a port taken."""
        try:
            sock = socket.socket()
        except OSError as exc:
            raise CheckError("cannot choose the processes' ports: %s (ulimit -n)" % (exc.strerror or exc))
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()  # a taken port's socket is not kept: a range of 2,000 taken ports costs none
            return None
        held.append(sock)
        return sock.getsockname()[1]

    candidates = iter(range(span[0], span[1] + 1)) if span else None
    try:
        chosen = []
        for port in fixed:
            if port is None and candidates is not None:
                port = next((p for p in candidates if p not in given and hold(p)), None)
                if port is None:
                    raise ConfigError("%s: too few free ports in %d-%d: %d needed" % (
                        where, span[0], span[1], fixed.count(None)))
            elif port is None:
                port = hold(0)
                if port is None:
                    raise CheckError("no free TCP port on 127.0.0.1")
            chosen.append(port)
        return chosen
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
