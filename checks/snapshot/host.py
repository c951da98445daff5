"""What this host runs, as snapshot reads it: the listening TCP sockets and the process behind
each (/proc), the running containers (the Docker Engine), the real file systems and memory.
Reading only; what goes over the network to the listeners is web.py's.
"""

from __future__ import annotations

import collections
import os
import re
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

from checks import CheckError, procfs

# address: where a check connects (a wildcard's loopback); bound: the address as the socket has it;
# uid: the socket's user.
Listener = collections.namedtuple("Listener", "address port bound owner uid")
# name: as a person says it (nginx, service.py); process: the process check's field ({"executable": ...}
# or {"pattern": ...}) that finds it again after a restart.
Owner = collections.namedtuple("Owner", "pid name process")
# Programs that run a script: the script names the service (python3 service.py is "service.py").
_INTERPRETERS = re.compile(r"(python|pypy|ruby|perl|php|lua|tclsh|node|nodejs|java|sh|bash|dash|zsh|ksh|dotnet|mono"
                           r"|deno|bun|Rscript|erl|beam\.smp)[\d.]*(-fpm[\d.]*)?")
_VALUE_OPTIONS = ("-W", "-X", "-cp", "-classpath", "--class-path", "-r", "--require", "-I")
# File systems on a disk (or a volume) whose use grows; not tmpfs, proc, cgroup, squashfs (always
# full), nor a network's (statvfs of a dead NFS server never returns).
_DISKS = ("ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "reiserfs", "bcachefs", "nilfs2", "vfat",
          "exfat", "ntfs", "ntfs3", "hfsplus")


def listening(ports, exclude, deadline: float) -> Tuple[List[Listener], Dict[str, List[int]],
                                                       List[Tuple[Listener, str]]]:
    """The listeners to describe, by port then address (IPv4 first), with their owners; the
    ports left out, by why; and the listeners left out, each with why: on an address this
    host does not have (bound with IP_FREEBIND, or a route since removed: a connection there
    would leave the host), or on a link-local address whose interface cannot be told. A
    link-local address is written with its interface (fe80::1%eth0), as only that reaches it.
    OSError when /proc/net/tcp cannot be read."""
    import ipaddress

    chosen, left_out = [], {"--exclude": [], "--ports": [], "ours": []}
    for bound, port, inode, uid in procfs.listeners():
        if ports and not _within(port, ports):
            left_out["--ports"].append(port)
        elif _within(port, exclude):
            left_out["--exclude"].append(port)
        else:
            chosen.append((bound, port, inode, uid))
    owners = procfs.socket_owners([inode for _, _, inode, _ in chosen], deadline)
    own = [ipaddress.ip_network("%s/%d" % pair, strict=False) for pair in procfs.own_addresses()]
    zones = procfs.interfaces()
    found, elsewhere, seen = [], [], set()
    for bound, port, inode, uid in chosen:
        pid = owners.get(inode)
        if pid == os.getpid():  # this snapshot's own (none today): never a service of the host
            left_out["ours"].append(port)
            continue
        address = connect_address(bound)
        ip = ipaddress.ip_address(address)
        why = "" if ip.is_loopback or any(ip in net for net in own) else \
            "not an address of this host (bound with IP_FREEBIND?)"
        if not why and ip.version == 6 and ip.is_link_local:
            names = zones.get(address, [])
            if len(names) == 1 and re.fullmatch(r"[\w.-]+", names[0], re.ASCII):
                address = bound = "%s%%%s" % (address, names[0])
            else:  # the socket's interface is not in /proc/net/tcp6: a guess could be another host's
                why = "a link-local address of %s: which one it listens on cannot be told" % (
                    "interfaces %s" % ", ".join(names) if len(names) > 1 else "an interface a config cannot name")
        if (address, port) not in seen:  # the same port bound twice (SO_REUSEPORT) is one listener
            seen.add((address, port))
            entry = Listener(address, port, bound, owner(pid) if pid else None, uid)
            if why:
                elsewhere.append((entry, why))
            else:
                found.append(entry)
    found.sort(key=lambda entry: (entry.port, ":" in entry.address, entry.address))
    return found, {why: sorted(set(ports)) for why, ports in left_out.items() if ports}, elsewhere


def _within(port: int, ranges) -> bool:
    return any(low <= port <= high for low, high in ranges)


def connect_address(bound: str) -> str:
    """Where to reach a socket bound to this address: a wildcard on its loopback (0.0.0.0 on
    127.0.0.1, :: on ::1), an IPv4-mapped IPv6 address as IPv4, any other as it is."""
    import ipaddress

    ip = ipaddress.ip_address(bound)
    if ip.is_unspecified:
        return "127.0.0.1" if ip.version == 4 else "::1"
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped) if mapped else str(ip)


def owner(pid: int) -> Optional[Owner]:
    """Who pid is, by name, and how a process check finds it again; None when it is gone, or
    has no name but blanks."""
    try:
        comm, argv = procfs.comm(pid), procfs.argv(pid)
    except OSError:
        return None
    program = os.path.basename(argv[0]) if argv else ""
    script = _script(argv) if _INTERPRETERS.fullmatch(comm) or _INTERPRETERS.fullmatch(program) else None
    name = script and (os.path.basename(script.rstrip("/")) or script)
    if name and name.strip() and program and _plain(program + script):
        pattern = r"(^|/)%s (.* )?%s( |$)" % (re.escape(program), re.escape(script))
        return Owner(pid, name, {"pattern": pattern})
    # comm is cut at 15 characters: argv[0]'s name is whole, unless the program rewrote it (nginx: master ...)
    name = program if program.startswith(comm) and _plain(program) and " " not in program else comm
    if not name.strip():  # named "" or " " (PR_SET_NAME), argv[0] no better: nothing a person or a check knows it by
        return None
    return Owner(pid, name, {"executable": name})


def _script(argv: List[str]) -> Optional[str]:
    """The script (or -m module, -jar file) an interpreter runs; None for code given inline."""
    words = iter(argv[1:])
    for word in words:
        if word in ("-m", "-jar"):
            return next(words, None)
        if word in ("-c", "-e", "--eval"):
            return None
        if word in _VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _plain(text: str) -> bool:
    """Text a config can hold as it is: no bytes that were not UTF-8, no control characters."""
    return text.isprintable() and not re.search("[\ud800-\udfff]", text)


def containers(timeout: float) -> Tuple[Optional[List[Dict[str, Any]]], str]:
    """The running containers, by name ({name, image, health, ports: published TCP ports}), and
    where they were asked; (None, why) when no engine answers. The docker kind's own ways of
    asking: the Engine API's socket, else the docker CLI."""
    import shutil

    from checks.kinds import docker

    path = docker._socket_from_env()
    try:
        if path and os.path.exists(path):
            where, listed = path, docker._api(path, "/containers/json", timeout)
        elif shutil.which("docker"):
            where = "the docker CLI"
            listed = docker._cli(["ps", "--no-trunc", "--format", "{{json .}}"], timeout, path, lines=True)
        else:
            return None, "no Docker engine here (no socket at %s, no docker CLI)" % (path or os.environ["DOCKER_HOST"])
    except CheckError as exc:
        return None, str(exc)
    running = []
    for entry in listed if isinstance(listed, list) else []:
        state = docker._listed_state(entry)
        if not state["Running"]:
            continue
        ports = entry.get("Ports")
        if isinstance(ports, list):  # the API: [{"PublicPort": 8080, "Type": "tcp"}]
            published = {p.get("PublicPort") for p in ports if isinstance(p, dict) and p.get("Type") == "tcp"}
        else:  # the CLI: "0.0.0.0:8080->80/tcp, :::8080->80/tcp"
            published = {int(port) for port in re.findall(r":(\d+)->\d+/tcp", str(ports or ""))}
        running.append({"name": docker._listed_name(entry), "image": str(entry.get("Image") or "?"),
                        "health": (state["Health"] or {}).get("Status"),
                        "ports": sorted(p for p in published if isinstance(p, int))})
    return sorted(running, key=lambda c: c["name"]), where


def filesystems() -> Tuple[List[Tuple[str, str]], List[str]]:
    """(mount point, type) of each real file system mounted, one per device (its shortest mount
    point: a bind mount of / is /), sorted; and what was passed over, in words. OSError when
    /proc/self/mounts cannot be read."""
    found, notes, devices = [], [], set()
    for _, point, kind in sorted(procfs.mounts(), key=lambda m: (len(m[1]), m[1])):
        if kind not in _DISKS and not (kind == "overlay" and point == "/"):  # a container's root is overlay
            continue
        if not _plain(point):
            notes.append("%r: a mount point a config cannot name" % point)
            continue
        try:
            info = os.stat(point)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_dev not in devices:  # not a file bind-mounted (/etc/hosts)
            devices.add(info.st_dev)
            found.append((point, kind))
    return sorted(found), notes
