"""docker: are containers running, and healthy where they have a healthcheck?

Asks the Engine API on its unix socket (DOCKER_HOST=unix://… or /var/run/docker.sock),
else the docker CLI. When neither answers, the check is an `error` (we could not
check), not a `fail`.
Facts: running (all running), healthy (all with a healthcheck report healthy),
containers {name: {exists, running, status, health}}.
"""

import json
import os
import socket
import subprocess
import time
from typing import Any, Dict
from urllib.parse import quote

from checks import CheckError, ConfigError
from checks.net import DeadlineGuard, describe_error, local_fault

NAME = "docker"
DEFAULT_EXPECT = ("running == true", "healthy == true")
DEFAULT_SOCKET = "/var/run/docker.sock"
_MAX_ANSWER = 4 * 1024 * 1024


def load(fields) -> Dict[str, Any]:
    names = fields.strings("containers", None)
    one = fields.text("container", None)
    if (names is None) == (one is None):
        raise ConfigError("%s: give container (a name) or containers (a list of names)" % fields.where)
    names = names if names is not None else [one]
    if not names:
        raise ConfigError("%s: give at least one container" % fields.at("containers"))
    return {"containers": names, "socket": fields.text("socket", None)}


def target(params) -> str:
    return "containers %s" % ",".join(params["containers"])


def probe(params, timeout: float) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    path = params["socket"] or _socket_from_env()
    if params["socket"] and not os.path.exists(path):
        # The CLI would ask its own default engine, not the one this check names.
        raise CheckError("docker: no Engine API socket at %s" % path)
    states = {}
    for name in params["containers"]:
        remaining = max(0.01, deadline - time.monotonic())
        if os.path.exists(path):
            states[name] = _inspect_api(path, name, remaining)
        else:
            states[name] = _inspect_cli(name, remaining, path)
    containers = {name: _summary(state) for name, state in states.items()}
    return {"running": all(c["running"] for c in containers.values()),
            "healthy": all(c["health"] in (None, "healthy") for c in containers.values()),
            "containers": containers}


def _socket_from_env() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    return host[len("unix://"):] if host.startswith("unix://") else DEFAULT_SOCKET


def _summary(state) -> Dict[str, Any]:
    if state is None:
        return {"exists": False, "running": False, "status": "missing", "health": None}
    health = (state.get("Health") or {}).get("Status")
    return {"exists": True, "running": bool(state.get("Running")), "status": state.get("Status"),
            "health": health}


def _inspect_api(path: str, name: str, timeout: float):
    """The container's State from GET /containers/{name}/json; None when it does not exist."""
    import http.client

    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)

    conn = UnixConnection("localhost", timeout=timeout)
    guard = DeadlineGuard(time.monotonic() + timeout)
    try:
        conn.connect()
        guard.watch(conn.sock)
        conn.request("GET", "/containers/%s/json" % quote(name, safe=""))
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
        raise CheckError("docker API at %s answered %d: %s" % (path, response.status, body[:200].decode("utf-8", "replace")))
    try:
        return json.loads(body).get("State") or {}
    except ValueError:
        raise CheckError("docker API at %s: answer is not JSON" % path)


def _inspect_cli(name: str, timeout: float, path: str):
    try:
        done = subprocess.run(["docker", "inspect", "--type", "container", "--format", "{{json .State}}", name],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout)
    except FileNotFoundError:
        raise CheckError("docker: no Engine API socket at %s and no docker CLI on PATH" % path)
    except OSError as exc:
        raise CheckError("docker: cannot run the docker CLI: %s" % (exc.strerror or exc))
    except subprocess.TimeoutExpired:
        raise CheckError("docker inspect timed out after %gs" % timeout)
    err = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0:
        # Not just "no such": a failed DNS lookup of DOCKER_HOST says "no such host".
        if "no such container" in err.lower() or "no such object" in err.lower():
            return None
        raise CheckError("docker: %s" % (err.splitlines()[-1] if err else "inspect exited %d" % done.returncode))
    try:
        return json.loads(done.stdout.decode("utf-8", "replace"))
    except ValueError:
        raise CheckError("docker inspect printed no JSON")
