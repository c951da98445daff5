"""process: is a process running, by pidfile or by name (read from /proc)?

Facts: running, count, pids; pidfile_error when a pidfile names no live process.
`executable` matches the program's name (as in `ps`); `pattern` is a regex over the full command line.
"""

import os
import re
from typing import Any, Dict, List

from checks import CheckError, ConfigError

NAME = "process"
DEFAULT_EXPECT = ("running == true",)
_PID_MAX = 4194304  # Linux PID_MAX_LIMIT


def load(fields) -> Dict[str, Any]:
    params = {"pidfile": fields.text("pidfile", None), "executable": fields.text("executable", None),
              "pattern": fields.text("pattern", None)}
    if sum(v is not None for v in params.values()) != 1:
        raise ConfigError("%s: give exactly one of pidfile, executable or pattern" % fields.where)
    if params["pattern"] is not None:
        try:
            re.compile(params["pattern"])
        except re.error as exc:
            raise ConfigError("%s: bad regular expression: %s" % (fields.at("pattern"), exc))
    return params


def target(params) -> str:
    return next("%s %s" % (k, v) for k, v in params.items() if v is not None)


def probe(params, timeout: float) -> Dict[str, Any]:
    if params["pidfile"] is not None:
        return _by_pidfile(params["pidfile"])
    pids = _matching(params["executable"], params["pattern"])
    return {"running": bool(pids), "count": len(pids), "pids": pids}


def _by_pidfile(path: str) -> Dict[str, Any]:
    facts: Dict[str, Any] = {"running": False, "count": 0, "pids": []}
    try:
        with open(path, "rb") as fh:
            text = fh.read(64).decode("ascii", errors="replace").strip()
    except FileNotFoundError:
        facts["pidfile_error"] = "%s does not exist" % path
        return facts
    except OSError as exc:
        raise CheckError("cannot read pidfile %s: %s" % (path, exc.strerror))
    # pid 0 would make kill() signal our own process group; beyond PID_MAX_LIMIT, kill() overflows.
    if not text.isdigit() or not 0 < int(text) <= _PID_MAX:
        facts["pidfile_error"] = "%s holds %r, not a pid" % (path, text[:20])
    elif _alive(int(text)):
        facts.update(running=True, count=1, pids=[int(text)])
    else:
        facts["pidfile_error"] = "%s names pid %s, which is not running" % (path, text)
    return facts


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:  # a zombie has exited; it only waits for its parent
        with open("/proc/%d/stat" % pid, "rb") as fh:  # bytes: a process name need not be UTF-8
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _matching(name, pattern) -> List[int]:
    if not os.path.isdir("/proc"):
        raise CheckError("process lookup by name needs /proc (Linux); use a pidfile")
    regex = re.compile(pattern) if pattern else None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as fh:
                argv = fh.read(65536).split(b"\0")
            with open("/proc/%s/comm" % entry, "rb") as fh:
                comm = fh.read().strip().decode("utf-8", errors="replace")
        except OSError:  # exited while we looked
            continue
        argv = [a.decode("utf-8", errors="replace") for a in argv if a]
        if not argv or not _alive(int(entry)):
            continue
        if regex is not None:
            hit = bool(regex.search(" ".join(argv)))
        else:
            hit = name in (comm, os.path.basename(argv[0]))
        if hit:
            found.append(int(entry))
    return sorted(found)
