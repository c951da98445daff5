"""docker: are containers running, and healthy where they have a healthcheck?

Asks the Engine API on its unix socket (DOCKER_HOST=unix://… or /var/run/docker.sock),
else the docker CLI. When neither answers, the check is an `error` (we could not
check), not a `fail`. Containers are named (container, containers) or selected by
label (a Compose project's, say), like `docker ps -a --filter label=...`.
Facts: running (some were found, and all run), healthy (all exist, and all with a
healthcheck report healthy), count, running_count ("4 containers Up" is running_count == 4),
not_running, not_healthy (missing, or a healthcheck not or not yet healthy) and missing
(names), and containers {name: {exists, running, status, health}}.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, Optional
from urllib.parse import quote

from checks import CheckError, ConfigError
from checks.model import cut
from checks.net import DeadlineGuard, describe_error, local_fault

NAME = "docker"
DEFAULT_EXPECT = ("running == true", "healthy == true")
# all it can give: a condition on another fact is a typo, exit 2 at load
FACTS = ("running", "healthy", "count", "running_count", "not_running", "not_healthy", "missing", "containers")
DEFAULT_SOCKET = "/var/run/docker.sock"
_MAX_ANSWER = 4 * 1024 * 1024
# `docker ps` shows health inside the status text: "Up 3 minutes (healthy)".
_LISTED_HEALTH = (("(healthy)", "healthy"), ("(unhealthy)", "unhealthy"), ("(health: starting)", "starting"))


def load(fields) -> Dict[str, Any]:
    names = fields.strings("containers", None)
    one = fields.text("container", None)
    label = fields.text("label", None)
    if [names, one, label].count(None) != 2:
        raise ConfigError("%s: give container (a name), containers (a list of names) or label (key or key=value)"
                          % fields.where)
    if names is not None and not names:
        raise ConfigError("%s: give at least one container" % fields.at("containers"))
    if label is not None and not label.strip("= "):
        raise ConfigError("%s: give a label key, or key=value" % fields.at("label"))
    return {"containers": [one] if one is not None else names, "label": label, "socket": fields.text("socket", None)}


def target(params) -> str:
    if params["label"] is not None:
        return "containers with label %s" % params["label"]
    return "containers %s" % ",".join(params["containers"])


def probe(params, timeout: float, ctx) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    path = params["socket"] or _socket_from_env()
    if params["socket"] and not os.path.exists(path):
        # The CLI would ask its own default engine, not the one this check names.
        raise CheckError("docker: no Engine API socket at %s" % path)
    api = path is not None and os.path.exists(path)
    if params["label"] is not None:
        if api:
            answer = _api(path, "/containers/json?all=1&filters=%s" % quote(json.dumps({"label": [params["label"]]})),
                          deadline - time.monotonic())
        else:
            answer = _cli(["ps", "-a", "--no-trunc", "--filter", "label=" + params["label"], "--format", "{{json .}}"],
                          deadline - time.monotonic(), path, lines=True)
        states = {_listed_name(entry): _listed_state(entry) for entry in answer or []}
    else:
        states = {}
        for name in params["containers"]:
            remaining = max(0.01, deadline - time.monotonic())
            if api:
                answer = _api(path, "/containers/%s/json" % quote(name, safe=""), remaining)
                states[name] = None if answer is None else answer.get("State") or {}
            else:
                states[name] = _cli(["inspect", "--type", "container", "--format", "{{json .State}}", name],
                                    remaining, path)
    return _facts({name: _summary(state) for name, state in states.items()})


def _facts(containers: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    def named(test):
        return [name for name, c in containers.items() if test(c)]
    not_healthy = named(lambda c: not c["exists"] or c["health"] not in (None, "healthy"))
    return {"running": bool(containers) and all(c["running"] for c in containers.values()),
            "healthy": not not_healthy,
            "count": len(named(lambda c: c["exists"])), "running_count": len(named(lambda c: c["running"])),
            "not_running": named(lambda c: not c["running"]), "not_healthy": not_healthy,
            "missing": named(lambda c: not c["exists"]), "containers": containers}


def _socket_from_env() -> Optional[str]:
    """The Engine API socket to ask; None when DOCKER_HOST names another engine (tcp://, ssh://): the CLI's."""
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return None
    return host[len("unix://"):] if host else DEFAULT_SOCKET


def _summary(state) -> Dict[str, Any]:
    if state is None:
        return {"exists": False, "running": False, "status": "missing", "health": None}
    health = (state.get("Health") or {}).get("Status")
    return {"exists": True, "running": bool(state.get("Running")), "status": state.get("Status"),
            "health": health}


def _listed_name(entry: Dict[str, Any]) -> str:
    names = entry.get("Names")  # the API: ["/web"]; the CLI: "web"
    name = names[0] if isinstance(names, list) and names else names if isinstance(names, str) else entry.get("Id")
    return str(name or "?").lstrip("/")


def _listed_state(entry: Dict[str, Any]) -> Dict[str, Any]:
    """A listed container's state in the shape inspect gives it."""
    status = str(entry.get("Status") or "")
    health = next((value for marker, value in _LISTED_HEALTH if marker in status), None)
    return {"Running": entry.get("State") == "running", "Status": entry.get("State"),
            "Health": {"Status": health} if health else None}


def _api(path: str, url: str, timeout: float) -> Optional[Any]:
    """The JSON the Engine API answers; None for a 404 (no such container)."""
    import http.client

    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)

    timeout = max(0.01, timeout)
    conn = UnixConnection("localhost", timeout=timeout)
    guard = DeadlineGuard(time.monotonic() + timeout)
    try:
        conn.connect()
        guard.watch(conn.sock)
        conn.request("GET", url)
        response = conn.getresponse()
        body = response.read(_MAX_ANSWER)
    except OSError as exc:
        reason = "timed out" if guard.fired else local_fault(exc) or describe_error(exc)
        raise CheckError("docker API at %s: %s" % (path, reason))
    except http.client.HTTPException:
        raise CheckError("docker API at %s: the answer is not HTTP (is this the Docker socket?)" % path)
    finally:
        guard.cancel()
        conn.close()
    if guard.fired:  # the guard's shutdown reads as an early end of the answer
        raise CheckError("docker API at %s: timed out after %gs" % (path, timeout))
    if response.status == 404:
        return None
    if response.status != 200:
        raise CheckError("docker API at %s answered %d: %s" % (path, response.status,
                                                               cut(body.decode("utf-8", "replace"), 200)))
    try:
        return json.loads(body)
    except ValueError:
        raise CheckError("docker API at %s: answer is not JSON" % path)


def _cli(argv, timeout: float, path: str, lines: bool = False):
    """What `docker ARGV` prints, as JSON (one document per line when lines); None for no such container."""
    try:
        done = subprocess.run(["docker"] + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=max(0.01, timeout))
    except FileNotFoundError:
        raise CheckError("docker: no Engine API socket at %s and no docker CLI on PATH"
                         % (path or os.environ.get("DOCKER_HOST")))
    except OSError as exc:
        raise CheckError("docker: cannot run the docker CLI: %s" % (exc.strerror or exc))
    except subprocess.TimeoutExpired:
        raise CheckError("docker %s timed out after %gs" % (argv[0], timeout))
    err = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        # Not just "no such": a failed DNS lookup of DOCKER_HOST says "no such host".
        if "no such container" in err.lower() or "no such object" in err.lower():
            return None
        raise CheckError("docker: %s" % (err.splitlines()[-1] if err else "%s exited %d" % (argv[0], done.returncode)))
    out = done.stdout.decode("utf-8", "replace")
    try:
        return [json.loads(line) for line in out.splitlines() if line.strip()] if lines else json.loads(out)
    except ValueError:
        raise CheckError("docker %s printed no JSON" % argv[0])
