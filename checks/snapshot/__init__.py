"""A config that describes this host as it is now: what `smoke.py snapshot` found (host.py's
listeners, containers and file systems; web.py's answers) turned into health checks, a name a
person would choose for each (nginx :8080, nginx :8080 /healthz), tags by what was found and a
description saying what it was at snapshot time. The command is snapshot/command.py.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List

from checks.snapshot import web

HEADROOM = 10  # percentage points over today's use of memory or a disk before its check fails
CEILING = 95  # ... but never past this, unless today's use already is


def checks(listeners, found, containers, host, processes: bool = True) -> List[Dict[str, Any]]:
    """The checks, in a stable order: per port its tcp checks (one per address), its http
    checks and Prometheus's, and the process behind it the first time it is seen; then the
    containers; then the host. An address is in a name only where a port has several."""
    published = {port: c["name"] for c in containers or [] for port in c["ports"]}
    ports: Dict[int, List[Any]] = {}
    for entry in listeners:
        ports.setdefault(entry.port, []).append(entry)
    out: List[Dict[str, Any]] = []
    owners: Dict[str, Dict[str, Any]] = {}
    for port, entries in ports.items():
        labels = [_label(entry, published) for entry in entries]
        asked = [(entry, label) for entry, (label, _) in zip(entries, labels)
                 if (found.get((entry.address, entry.port)) or {}).get("scheme")]
        for entry, (label, docker) in zip(entries, labels):
            out.append(_tcp(entry, "%s %s" % (label, ":%d" % port if len(entries) == 1 else _host_port(entry)),
                            docker))
        for entry, label in asked:
            base = "%s %s" % (label, ":%d" % port if len(asked) == 1 else _host_port(entry))
            out += _http(entry, base, found[(entry.address, entry.port)])
        for entry, (_, docker) in zip(entries, labels):
            if not entry.owner or docker or not processes:  # a container's port: its docker check says it
                continue
            key = repr(sorted(entry.owner.process.items()))
            if key in owners:
                owners[key]["_ports"].append(entry.port)
            else:
                owners[key] = dict(name="%s process" % entry.owner.name, kind="process", **entry.owner.process,
                                   tags=["process"], _ports=[entry.port], _pid=entry.owner.pid)
                out.append(owners[key])
    for check in owners.values():
        held = ", ".join(":%d" % port for port in sorted(set(check.pop("_ports"))))
        check["description"] = "the process behind %s (pid %d at snapshot time)%s" % (
            held, check.pop("_pid"), "" if "pattern" in check else
            "; found again by its name, so another %s passes it too" % check["executable"])
    for container in containers or []:
        out.append(_container(container))
    if host is not None:
        out += _host(*host)
    return _unique(out)


def _label(entry, published) -> tuple:
    """(what a person calls a listener, whether it is a container's published port)."""
    if entry.owner and entry.owner.name == "docker-proxy" and entry.port in published:
        return published[entry.port], True
    return (entry.owner.name if entry.owner else "port"), False


def _host_port(entry) -> str:
    return "%s:%d" % ("[%s]" % entry.address if ":" in entry.address else entry.address, entry.port)


def _tcp(entry, name: str, docker: bool) -> Dict[str, Any]:
    checked = "" if entry.address == entry.bound else " (checked on %s)" % entry.address
    held = ("held by %s (pid %d)" % (entry.owner.name, entry.owner.pid) if entry.owner else
            "its process not visible (another PID namespace, or another user's without root) or nameless")
    return {"name": name, "kind": "tcp", "address": _host_port(entry), "tags": ["tcp", "docker"] if docker else ["tcp"],
            "description": "listening on %s%s, %s at snapshot time" % (
                _host_port(entry._replace(address=entry.bound)), checked, held)}


def _http(entry, base: str, answered: Dict[str, Any]) -> List[Dict[str, Any]]:
    out = []
    scheme = answered["scheme"]
    for path, facts in answered["endpoints"]:
        check = {"name": "%s %s" % (base, path), "kind": "http", "url": web.url(scheme, entry.address, entry.port,
                                                                                   path),
                 "expect": web.expectations(facts), "tags": ["http"]}
        said = ["answered %d at snapshot time" % facts["status"]]
        if answered["catch_all"]:
            said.append("so does every path here (%s too): this checks only that it still answers" % web.CANARY)
        if answered["insecure"] is not None:
            check["insecure"] = True
            said.append("insecure: its certificate does not verify for %s (%s), so TLS is not checked, the answer is"
                        % (entry.address, answered["insecure"]))
        check["description"] = "; ".join(said)
        out.append(check)
    up = answered["prometheus"]
    if up is not None:
        url = "%s://%s" % (scheme, _host_port(entry))
        check = {"name": "%s up" % base, "kind": "prometheus", "url": url, "query": "up",
                 "expect": ["count >= %d" % up["count"]] + (["values !contains 0"] if not up["down"] else []),
                 "tags": ["prometheus"]}
        if answered["insecure"] is not None:
            check["insecure"] = True
        check["description"] = "%d target%s at snapshot time, %s" % (
            up["count"], "" if up["count"] == 1 else "s",
            "all up" if not up["down"] else "%d down then (so not expected up)" % up["down"])
        out.append(check)
    return out


def _container(container: Dict[str, Any]) -> Dict[str, Any]:
    check = {"name": "docker %s" % container["name"], "kind": "docker", "container": container["name"],
             "tags": ["docker"]}
    said = "image %s, running at snapshot time" % container["image"]
    if container["health"] not in (None, "healthy"):  # as it is now: running, its healthcheck not yet passing
        check["expect"] = ["running == true"]
        said += "; its healthcheck said %s then, so only running is expected" % container["health"]
    elif container["health"]:
        said += ", healthy"
    check["description"] = said
    return check


def _host(memory: float, disks) -> List[Dict[str, Any]]:
    out = [{"name": "memory", "kind": "resources", "expect": ["memory_percent < %d" % limit(memory)],
            "tags": ["host"], "description": _use(memory)}]
    for point, kind, used in disks:
        out.append({"name": "disk %s" % point, "kind": "resources", "paths": [point],
                    "expect": ["disk_percent < %d" % limit(used)], "tags": ["host"],
                    "description": "%s, %s" % (kind, _use(used))})
    return out


def limit(used: float) -> int:
    """Where a use of memory or disk fails: today's plus HEADROOM, at most CEILING, and always
    above today's (the snapshot passes on the host it was taken on)."""
    return max(min(CEILING, math.ceil(used) + HEADROOM), math.floor(used) + 1)


def _use(used: float) -> str:
    if limit(used) > CEILING:
        return "%g%% used at snapshot time, already past %d%%: fails from %d%%" % (used, CEILING, limit(used))
    return "%g%% used at snapshot time; fails from %d%% (that + %d, at most %d)" % (used, limit(used), HEADROOM,
                                                                                    CEILING)


def _unique(checks: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Names are how checks are picked and reported: a second of a name gets (2), and so on;
    alike as the config loader compares them (café and cafe + U+0301 are one name)."""
    from checks.config import same_name

    seen = set()
    for check in checks:
        name, number = check["name"], 1
        while same_name(check["name"]) in seen:
            number += 1
            check["name"] = "%s (%d)" % (name, number)
        seen.add(same_name(check["name"]))
    return checks


def config(checks: List[Dict[str, Any]], comment: str) -> Dict[str, Any]:
    """The config, every string in it as the loader reads it back to what was seen: a process
    named ${HOME}, or a JSON key "${TOKEN}", is text, never a variable of the environment
    health runs in."""
    return literal({"_comment": comment, "health": {"checks": checks}})


def literal(value: Any) -> Any:
    """value with each ${ in its strings written $${, which the config loader reads as ${ (and
    any other $ as itself, so $$ and a lone $ stay as they are); keys are never expanded."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, list):
        return [literal(item) for item in value]
    if isinstance(value, dict):
        return {key: literal(item) for key, item in value.items()}
    return value
