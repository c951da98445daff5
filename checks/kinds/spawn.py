"""spawn: start a long-lived process (a server to test) that the run owns until it ends.

Facts: pid, log (where its stdout and stderr go, begun anew), running (still alive a moment
after start; a program that exits at once is a fail, with the end of its log). When the step
sequence ends it is stopped (SIGTERM, then SIGKILL), and a result says how.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict

from checks import CheckError, ConfigError
from checks.kinds import command
from checks.probes import proc

NAME = "spawn"
DEFAULT_EXPECT = ("running == true",)
_SETTLE_S = 0.2  # long enough to see a bad flag or a missing module end it


def load(fields) -> Dict[str, Any]:
    params = command.load(fields)
    if params.pop("leave_running"):
        raise ConfigError("%s: a spawned process is the run's, stopped when the steps end; to leave a process "
                          "running, start it with a command step (one that daemonises, or systemctl start)"
                          % fields.at("leave_running"))
    params["log"] = fields.path("log")
    return params


def target(params) -> str:
    return "%s > %s" % (proc.describe(params["command"]), params["log"])


def probe(params, timeout: float, ctx) -> Dict[str, Any]:
    if ctx.cleanup is None:
        raise CheckError("spawn: only a run that can stop the process may start it")
    spawned = proc.spawn(params["command"], params["log"], ctx.cleanup, params["shell"], params["env"],
                         params["cwd"], fresh=True)  # its log is this run's: an earlier run's lines never count
    time.sleep(min(_SETTLE_S, timeout))
    facts = {"pid": spawned.pid, "log": params["log"], "running": spawned.running()}
    if not facts["running"]:
        facts["exit_code"] = spawned.proc.returncode
        facts["error"] = "exited at once with code %s: %s" % (spawned.proc.returncode, tail(params["log"]))
    return facts


def tail(path: str) -> str:
    """The end of a log, on one line."""
    from checks import fsio
    try:
        _, data = fsio.read_tail(path, 300)
    except OSError as exc:
        return "(no log: %s)" % fsio.why(exc)
    return data.decode("utf-8", "replace").strip().replace("\n", " | ")[-300:]
