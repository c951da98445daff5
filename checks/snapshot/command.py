"""`smoke.py snapshot`: write the config that describes this host as it is now, for
`smoke.py health --config` to hold it to later (after a deploy, at 3 a.m. on a host nobody
documented). It reads /proc, the Docker Engine and statvfs, and probes only its own host's
listening addresses, with GET and TCP connect: nothing it sends changes anything. It runs no
check and judges nothing: exit 0 when the config is written, 2 on bad usage, 3 when /proc
cannot be read or the file written.
"""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Tuple

EXAMPLES = """  python3 smoke.py snapshot --output host.json      # then, after the deploy:
  python3 smoke.py health --config host.json --format text
  python3 smoke.py snapshot --ports 8080,9090 --exclude 9100-9199 --format toml --output host.toml
  python3 smoke.py snapshot --only-listening --dry-run
  python3 smoke.py snapshot --paths +/api/v2/status,/internal/ready --timeout 20
"""
TAGS = ("tcp", "http", "process", "docker", "host")
# Where health endpoints usually are: Kubernetes', Prometheus', Spring's and the like, model servers' (OpenAI's
# API, KServe's v2), and metrics.
PATHS = ("/health", "/healthz", "/readyz", "/livez", "/-/healthy", "/-/ready", "/api/health", "/ping", "/v1/models",
         "/v2/health/ready", "/status", "/metrics")
PER_PROBE_S = 2.0  # at most, per request: a port that hangs costs this, once


def add_arguments(parser) -> None:
    from checks.config import bounded

    parser.add_argument("--output", metavar="FILE", help="write the config here (default: stdout); as every file "
                                                         "smoke.py writes: atomically, never through another "
                                                         "user's link")
    parser.add_argument("--format", choices=("json", "toml"), help="json (default), or toml (the default for an "
                                                                   "--output FILE.toml); smoke.py reads TOML on "
                                                                   "Python 3.11+ only")
    parser.add_argument("--timeout", type=bounded(0.1, 600), default=10.0, metavar="S",
                        help="bound on the whole snapshot, in seconds (default 10); each request takes at most "
                             "%gs (a quarter of S, when that is less)" % PER_PROBE_S)
    parser.add_argument("--ports", action="append", type=_ports, default=[], metavar="PORTS",
                        help="only these listening ports: 8080,9090 or 8000-8100 (repeatable)")
    parser.add_argument("--exclude", action="append", type=_ports, default=[], metavar="PORTS",
                        help="leave these ports out: 22 or 9100-9199,5432 (repeatable)")
    parser.add_argument("--paths", type=_paths, metavar="P1,P2",
                        help="the health paths to try on each port instead of the usual ones; +P1,P2 adds them "
                             "to those (%s)" % ", ".join(PATHS))
    parser.add_argument("--only-listening", action="store_true",
                        help="only the listening ports and their processes (tcp and process checks): no HTTP, "
                             "no containers, no memory or disks")
    parser.add_argument("--skip", action="append", type=_tags, default=[], metavar="TAGS",
                        help="leave out what is tagged so: tcp (the listening ports, and so their processes and "
                             "HTTP), http (no HTTP probing), process, docker, host (memory and disks); "
                             "comma-separated, repeatable")
    parser.add_argument("--dry-run", action="store_true", help="say what would be read and probed; probe nothing")


def _ports(text: str) -> List[Tuple[int, int]]:
    """PORTS as (low, high) ranges: 80,443,8000-8100."""
    import argparse

    found = []
    for word in text.split(","):
        low, dash, high = word.strip().partition("-")
        try:
            pair = (int(low), int(high) if dash else int(low))
        except ValueError:
            raise argparse.ArgumentTypeError("expected ports such as 8080,9090 or 8000-8100, got %r" % word)
        if not 0 < pair[0] <= pair[1] < 65536:
            raise argparse.ArgumentTypeError("%r: a port is 1 to 65535, a range low-high" % word)
        found.append(pair)
    return found


def _paths(text: str) -> Tuple[bool, List[str]]:
    """(whether they add to the usual paths, the paths)."""
    import argparse

    add = text.startswith("+")
    paths = [path.strip() for path in text[add:].split(",")]
    for path in paths:
        if not path.startswith("/") or any(char.isspace() or not char.isprintable() for char in path):
            raise argparse.ArgumentTypeError("expected paths such as /health,/ready (each starts with /, no "
                                             "spaces), got %r" % path)
    return add, paths


def _tags(text: str) -> List[str]:
    import argparse

    words = [word.strip() for word in text.split(",")]
    for word in words:
        if word not in TAGS:
            raise argparse.ArgumentTypeError("%r: expected some of %s" % (word, ", ".join(TAGS)))
    return words


def main(args) -> int:
    from checks import SmokeError

    try:
        return _run(args)
    except SmokeError as exc:
        _say("error: %s" % exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _say(line: str) -> None:
    """A line on stderr, every control character escaped, a newline too: what a process calls
    itself is anybody's choice, and must not start a line of ours."""
    from checks.cli.terminal import say
    from checks.render import printable

    say(printable("smoke.py snapshot: " + line))


def _run(args) -> int:
    import os

    from checks import ConfigError, fsio, sinks
    from checks.cli.terminal import emit
    from checks.snapshot import host

    started = time.monotonic()
    deadline = started + args.timeout
    form = args.format or ("toml" if (args.output or "").endswith(".toml") else "json")
    if args.output and args.output.endswith((".json", ".toml")) and not args.output.endswith("." + form):
        raise ConfigError("--format %s but --output %s: smoke.py reads a file by its name's ending" % (form,
                                                                                                      args.output))
    if args.output is not None and not args.dry_run:
        sinks.check_output(args.output)
    skip = {tag for tags in args.skip for tag in tags} | ({"http", "docker", "host"} if args.only_listening else set())
    paths = PATHS
    if args.paths:
        paths = tuple(dict.fromkeys(paths + tuple(args.paths[1]))) if args.paths[0] else tuple(args.paths[1])
    ports = [pair for pairs in args.ports for pair in pairs]
    exclude = [pair for pairs in args.exclude for pair in pairs]
    try:
        listeners, left_out, elsewhere = ([], {}, []) if "tcp" in skip else host.listening(
            ports, exclude, started + args.timeout / 4)
    except OSError as exc:
        _say("cannot read /proc/net/tcp: %s (Linux only)" % fsio.why(exc))
        return 3
    left_there = [entry for entry, _ in elsewhere]
    for port in _missing(ports, listeners + left_there, left_out) if "tcp" not in skip else ():
        _say("nothing listens on :%d (--ports)" % port)
    for entry, why in elsewhere:
        _say(":%d %s on %s: %s: left out, nothing is sent there" % (entry.port, _who(entry), _bound(entry), why))
    if args.dry_run:
        emit(_plan(listeners, left_out, paths, skip))
        return 0
    per_probe = min(PER_PROBE_S, max(0.05, args.timeout / 4))
    found, containers, where, machine = _gather(listeners, paths, skip, per_probe, deadline)
    refused = [entry for entry in listeners if (found.get((entry.address, entry.port)) or {}).get("refused")]
    listeners = [entry for entry in listeners if entry not in refused]
    from checks import __version__, snapshot
    from checks.snapshot import write

    checks = snapshot.checks(listeners, found, containers, machine[:2] if isinstance(machine, tuple) else None,
                             "process" not in skip)
    for line in _found(listeners, left_out, found, containers, where, machine, skip):
        _say(line)
    for entry in refused:
        _say(":%d %s on %s: refused the connection when asked: left out (a check of it would fail at once)" % (
            entry.port, _who(entry), _bound(entry)))
    cut = _cut(listeners, found)
    if cut:
        _say(cut)
    comment = ("Written by smoke.py %s snapshot on %s at %s: what this host ran then, %s. Run it: python3 smoke.py "
               "health --config %s. Names, tags and expectations are suggestions: edit freely." % (
                   __version__, os.uname().nodename, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   _counts(checks), args.output or "FILE"))
    if not checks:  # written as found, and said now: health would refuse it later (nothing to check, exit 2)
        _say("nothing found to check in %s: the config has no checks, and health --config refuses such a one" % (
            "what --ports, --exclude and --skip leave" if ports or exclude or skip else "this host"))
    doc = snapshot.config(checks, comment)
    text = write.to_toml(doc) if form == "toml" else write.to_json(doc)
    count = "%d check%s" % (len(checks), "" if len(checks) == 1 else "s")
    if args.output is None:
        emit(text)
        _say("%s in %.1fs" % (count, time.monotonic() - started))
        return 0
    problem = sinks.write_output(args.output, text)
    if problem:
        _say(problem)
        return 3
    older = " (a TOML config needs Python 3.11; --format json runs anywhere)" if form == "toml" and \
        sys.version_info < (3, 11) else ""
    _say("wrote %s to %s in %.1fs (smoke.py health --config %s runs them%s)" % (
        count, args.output, time.monotonic() - started, args.output, older))
    return 0


def _gather(listeners, paths, skip, per_probe: float, deadline: float):
    """(web.probe's answers, the containers, where they were asked, (memory, disks)), all at once.
    The listeners of root and of the user taking the snapshot are asked first, every question
    of theirs before any of another user's: a user's thousand silent ports cannot use up
    --timeout before the host's services are asked."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from checks.snapshot import host, web

    with ThreadPoolExecutor(1) as aside:
        asked = aside.submit(host.containers, min(5.0, max(0.05, deadline - time.monotonic()))) \
            if "docker" not in skip else None
        first = [] if "http" in skip else list(_first_per_owner(listeners))
        found = {}
        for ours in (True, False):
            targets = list(dict.fromkeys((entry.address, entry.port) for entry in first
                                         if (entry.uid in (0, os.geteuid())) == ours))
            found.update(web.probe(targets, list(paths), per_probe, deadline) if targets else {})
        containers, where = asked.result() if asked else (None, "")
    return found, containers, where, None if "host" in skip else _machine()


def _first_per_owner(listeners):
    """The listener of each port and owner to ask over HTTP: a port bound on 0.0.0.0 and :: by
    one process is one service, asked once (on 127.0.0.1)."""
    seen = set()
    for entry in listeners:
        key = (entry.port, entry.owner.pid if entry.owner else None)
        if key not in seen:
            seen.add(key)
            yield entry


def _machine():
    """(memory used %, [(mount point, type, used %)], what was passed over), or a str: why
    neither could be read. A disk statvfs cannot read is passed over."""
    from checks import CheckError, fsio
    from checks.kinds import resources
    from checks.snapshot import host

    try:
        points, notes = host.filesystems()
        memory = resources.memory_percent()
    except OSError as exc:
        return "cannot read /proc/self/mounts: %s" % fsio.why(exc)
    except CheckError as exc:
        return str(exc)
    disks = []
    for point, kind in points:
        try:
            disks.append((point, kind, resources.disk_percent(point)))
        except CheckError as exc:
            notes.append(str(exc))
    return memory, disks, notes


def _missing(ports, listeners, left_out) -> List[int]:
    """Single ports given to --ports that nothing listens on (ranges are a filter, not a claim)."""
    listening = {entry.port for entry in listeners} | set(left_out.get("--exclude", [])) | set(left_out.get("ours", []))
    return sorted({low for low, high in ports if low == high and low not in listening})


def _who(entry) -> str:
    return "%s (pid %d)" % (entry.owner.name, entry.owner.pid) if entry.owner else "owner not visible"


def _bound(entry) -> str:
    return "[%s]" % entry.bound if ":" in entry.bound else entry.bound


def _cut(listeners, found) -> str:
    """What --timeout left unasked, in a line; "" when every listener asked was."""
    import os

    from checks.snapshot import web

    unasked = [entry for entry in listeners if (found.get((entry.address, entry.port)) or {}).get("why") == web.UNASKED]
    if not unasked:
        return ""
    others = sum(entry.uid not in (0, os.geteuid()) for entry in unasked)
    return ("--timeout ran out before %d listener%s %s asked over HTTP (%d of them other users'; root's and this "
            "user's are asked first): %s; give a longer --timeout, or --ports" % (
                len(unasked), "" if len(unasked) == 1 else "s", "was" if len(unasked) == 1 else "were", others,
                ", ".join(":%d" % entry.port for entry in unasked[:10]) + (" ..." if len(unasked) > 10 else "")))


def _plan(listeners, left_out, paths, skip) -> str:
    from checks.kinds import docker
    from checks.snapshot import _host_port, host, web

    lines = ["smoke.py snapshot --dry-run: nothing is probed. A snapshot would:"]
    if "tcp" not in skip:
        lines.append("  read /proc/net/tcp and tcp6: %d listening ports%s" % (
            len({entry.port for entry in listeners}), _left_out(left_out)))
    else:
        lines.append("  not read the listening ports (--skip tcp)")
    asked = {(entry.address, entry.port) for entry in _first_per_owner(listeners)} if "http" not in skip else set()
    if listeners:
        lines.append("  connect to each%s:" % (
            " and GET, over http and https, %s and %s" % (", ".join(paths), web.CANARY) if asked else ""))
    for entry in listeners:
        lines.append("    :%d %s, bound on %s: %s%s" % (entry.port, _who(entry), entry.bound, _host_port(entry),
                                                   "" if (entry.address, entry.port) in asked or not asked else
                                                   " (TCP only: its service is asked on its first address)"))
    if "docker" not in skip:
        import os
        import shutil

        path = docker._socket_from_env()
        lines.append("  list the running containers: %s" % (
            "the Engine API at %s" % path if path and os.path.exists(path) else
            "the docker CLI" if shutil.which("docker") else "(no Docker engine here)"))
    if "host" not in skip:
        try:
            disks = ", ".join("%s (%s)" % point for point in host.filesystems()[0]) or "no real file system"
        except OSError as exc:
            disks = "no disk (cannot read /proc/self/mounts: %s)" % exc.strerror
        lines.append("  read memory use (/proc/meminfo) and the use of %s (statvfs)" % disks)
    from checks.render import printable

    return "".join(printable(line) + "\n" for line in lines)


def _left_out(left_out: Dict[str, List[int]]) -> str:
    shown = {"--exclude": "by --exclude", "--ports": "not in --ports", "ours": "this snapshot's own"}
    parts = ["%d %s" % (len(ports), shown[why]) if why == "--ports" else
             "%s %s" % (", ".join(":%d" % port for port in ports[:10]) + (" ..." if len(ports) > 10 else ""),
                        shown[why]) for why, ports in left_out.items()]
    return " (left out: %s)" % "; ".join(parts) if parts else ""


def _found(listeners, left_out, found, containers, where, machine, skip) -> List[str]:
    """What was found, a line per listener then containers and the host, in the checks' order."""
    lines = ["listening ports: not read (--skip tcp)" if "tcp" in skip else "%d listening ports%s" % (
        len({entry.port for entry in listeners}), _left_out(left_out))]
    asked = {(entry.port, entry.owner.pid if entry.owner else None): entry.address
             for entry in _first_per_owner(listeners)} if found else {}
    for entry in listeners:
        answered = found.get((entry.address, entry.port))
        line = ":%d %s on %s: " % (entry.port, _who(entry), _bound(entry))
        if answered is None:
            first = asked.get((entry.port, entry.owner.pid if entry.owner else None))
            lines.append(line + ("tcp (its HTTP was asked on %s)" % first if first else "tcp only"))
        elif not answered["scheme"]:
            lines.append(line + "%s: tcp only" % answered["why"])
        else:
            said = answered["scheme"]
            if answered["insecure"] is not None:
                said += " (certificate not verified: %s)" % answered["insecure"]
            said += ": " + (", ".join("%s %d" % (path, facts["status"]) for path, facts in answered["endpoints"])
                            or "no health path answered 2xx")
            if answered["catch_all"]:
                said += " (every path answers so)"
            if answered["over_cap"]:
                said += "; over 1 MiB, left out: " + ", ".join(answered["over_cap"])
            if answered["prometheus"] is not None:
                up = answered["prometheus"]
                said += "; Prometheus: %d of %d targets up" % (up["count"] - up["down"], up["count"])
            lines.append(line + said)
    if containers is not None:
        lines.append("docker (%s): %d running container%s%s" % (where, len(containers), "" if len(containers) == 1
                                                                  else "s", ": " + ", ".join(
            c["name"] for c in containers) if containers else ""))
    elif where:
        lines.append("docker: %s: no containers listed" % where)
    if isinstance(machine, str):
        lines.append("host: %s: no memory or disk checks" % machine)
    elif machine is not None:
        lines.append("host: memory %g%% used; %s%s" % (machine[0], ", ".join(
            "%s %g%% used" % (point, used) for point, _, used in machine[1]) or "no real file system",
            "".join("; passed over: " + note for note in machine[2])))
    return lines


def _counts(checks: List[Dict[str, Any]]) -> str:
    kinds: Dict[str, int] = {}
    for check in checks:
        kinds[check["kind"]] = kinds.get(check["kind"], 0) + 1
    return "%d check%s (%s)" % (len(checks), "" if len(checks) == 1 else "s", ", ".join("%d %s" % (n, kind) for kind, n in sorted(kinds.items()))) \
        if checks else "no checks"
