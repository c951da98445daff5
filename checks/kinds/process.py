"""process: is a process running, by pidfile or by name (read from /proc)?

Facts: running, count, pids; pidfile_error when a pidfile names no live process.
`executable` matches the program's name (as in `ps`); `pattern` is a regex over the full command line.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List

from checks import CheckError, ConfigError, lifecycle, procfs, regex
from checks.probes import proc

NAME = "process"
DEFAULT_EXPECT = ("running == true",)
# all it can give: a condition on another fact is a typo, exit 2 at load
FACTS = ("running", "count", "pids", "pidfile_error")


def load(fields) -> Dict[str, Any]:
    params = {"pidfile": fields.path("pidfile", None), "executable": fields.text("executable", None),
              "pattern": fields.text("pattern", None)}
    if sum(v is not None for v in params.values()) != 1:
        raise ConfigError("%s: give exactly one of pidfile, executable or pattern" % fields.where)
    problem = params["pattern"] is not None and regex.pattern_problem(params["pattern"])
    if problem:
        raise ConfigError("%s: bad regular expression: %s" % (fields.at("pattern"), problem))
    return params


def target(params) -> str:
    return next("%s %s" % (k, v) for k, v in params.items() if v is not None)


def probe(params, timeout: float, ctx) -> Dict[str, Any]:
    if params["pidfile"] is not None:
        return _by_pidfile(params["pidfile"])
    pids = _matching(params["executable"], params["pattern"], time.monotonic() + timeout)
    return {"running": bool(pids), "count": len(pids), "pids": pids}


def _by_pidfile(path: str) -> Dict[str, Any]:
    facts: Dict[str, Any] = {"running": False, "count": 0, "pids": []}
    pid, problem = proc.read_pidfile(path)
    if problem:
        facts["pidfile_error"] = problem
    else:
        facts.update(running=True, count=1, pids=[pid])
    return facts


def _matching(name, pattern, deadline: float) -> List[int]:
    if not os.path.isdir("/proc"):
        raise CheckError("process lookup by name needs /proc (Linux); use a pidfile")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv, comm = procfs.argv(int(entry)), procfs.comm(int(entry))
        except (FileNotFoundError, ProcessLookupError, PermissionError):  # exited while we looked, or hidden
            continue
        except OSError as exc:  # out of file descriptors: a smaller count would be a lie
            raise CheckError("cannot read /proc/%s: %s" % (entry, exc.strerror or exc))
        if argv and procfs.alive(int(entry)) and not lifecycle.is_internal(procfs.parent(int(entry)), argv):
            found.append((int(entry), [a.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                                       for a in argv], comm))
    if pattern is not None:
        hits = regex.search_each(pattern, [" ".join(argv) for _, argv, _ in found], deadline)
    else:
        hits = [name in (comm, os.path.basename(argv[0])) for _, argv, comm in found]
    return sorted(pid for (pid, _, _), hit in zip(found, hits) if hit)
