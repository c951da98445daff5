"""The fleet view of several hosts' reports (smoke.report/1): which hosts fail which checks, the
worst first, and the perf loads spread over hosts merged into one (summary/load.py). Reads what
runs left and runs no check; the `summary` command is summary/command.py, its page page.py's
render_fleet.

A report is found as given (a file) or under a directory: DIR/*.json and DIR/HOST/.../*.json
(Ansible's fetch puts each host's files under a directory named by its inventory name); a
directory of DIR's that holds nothing is a host that sent nothing, unless it is a state
directory (--state-dir beside the reports: STATE). Every file is read bounded: a regular file
of at most MAX_REPORT bytes, refused at once otherwise (a FIFO, a device, a 10 GB file), so no
file among the reports can hang the summary or fill memory; and only where no user but us and
root could have written it, as a history is read: a report another user left is no host's word.

A host is named by its report: the --instance its run was given, else its host name; a report
that cannot be read is named by its place (HOST of DIR/HOST/, else its path). A host with two
reports of the same command is said, and both count: nothing a report says is passed over.
"""

from __future__ import annotations

import collections
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

MAX_REPORT = 64 << 20  # bytes of a report file, at most (a report of 10,000 results is some 10 MB)
MAX_REPORTS = 10000  # report files in one summary
MAX_DEPTH = 8  # directory levels under a DIR/HOST/ (Ansible's fetch without flat keeps the host's path)
SCHEMA = "smoke.report/1"
LINK = "a symbolic link: not followed (give the directory it points to itself, if it holds reports)"
NONE = "no report (*.json) in it"
# What a state directory holds (the history and its lock, rollback's lock, incidents and copy of the report it
# judged): one of DIR's directories with some of these and no other *.json is smoke.py's state, not a host.
STATE = ("history.jsonl", "history.lock", "rollback.lock", "incidents.jsonl", "last-report.json")
BIG = "larger than %d MB: not a smoke.py report" % (MAX_REPORT >> 20)
MEMORY = "not read: its %d MB of JSON need more memory than this host gives summary (ulimit -v?)"
TRUST = "summary reads only what no user but you and root could have written"
_RANK = {"error": 0, "fail": 1, "warn": 2, "pass": 3, "skip": 4}  # worst first


class Report(collections.namedtuple("Report", "host where command status exit_code started_at duration_ms "
                                              "results problem home")):
    """One report as the summary uses it, or (problem set) a file that is none. results: each
    result dict of the report as it stands (name, section, kind, status, message, expect, facts);
    home: the host directory (DIR/HOST) it was found in, "" for a file given or DIR/NAME.json."""

    __slots__ = ()


def find(paths: List[str]) -> Tuple[List[Tuple[str, str, str]], List[Report]]:
    """([(file, the host its place names, its host directory or "")], [a Report saying so for
    each host directory, or directory given, with no report in it]) of the paths given: files as
    they are, directories walked (DIR/NAME.json is host NAME's, DIR/HOST/.../*.json host HOST's).
    Each directory of DIR's is a host, and one with no report is a host that sent none, whatever
    else DIR holds; but a state directory (STATE) is passed over: health --state-dir DIR/state
    beside DIR/web-1.json keeps its history there, and is no host."""
    from checks import ConfigError, fsio

    found: List[Tuple[str, str, str]] = []
    empty: List[Report] = []
    for path in paths:
        if not os.path.isdir(path):
            found.append((path, path, ""))
            continue
        try:
            entries = sorted(os.scandir(path), key=lambda entry: entry.name)
        except OSError as exc:
            empty.append(_unreadable(path, path, "cannot read it: %s" % fsio.why(exc)))
            continue
        before, said = len(found), len(empty)
        for entry in entries:
            if entry.is_symlink() and not entry.name.endswith(".json"):
                empty.append(_unreadable(entry.name, entry.path, LINK))
            elif entry.is_dir(follow_symlinks=False):
                if _state(entry.path):
                    continue
                inside, links = _walk(entry.path, 1)
                found += [(name, entry.name, entry.path) for name in inside]
                empty += [_unreadable(entry.name, link, LINK) for link in links]
                if not inside and not links:
                    empty.append(_unreadable(entry.name, entry.path, NONE))
            elif entry.name.endswith(".json"):
                found.append((entry.path, entry.name[:-len(".json")], ""))
            if len(found) > MAX_REPORTS:
                raise ConfigError("more than %d reports: give fewer files or directories" % MAX_REPORTS)
        if len(found) == before and len(empty) == said:
            empty.append(_unreadable(path, path, NONE))
    if len(found) > MAX_REPORTS:
        raise ConfigError("more than %d reports: give fewer files or directories" % MAX_REPORTS)
    return found, empty


def _state(path: str) -> bool:
    """Whether a directory is a state directory: some of STATE's files, and no *.json but
    rollback's last-report.json (a host's directory with a history beside its report is a host's)."""
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return any(name in STATE for name in names) and not any(
        name.endswith(".json") and name != "last-report.json" for name in names)


def _walk(path: str, depth: int) -> Tuple[List[str], List[str]]:
    """(the *.json files under path, sorted, MAX_DEPTH levels down at most; the links to
    directories met there, never followed: a loop, or a way out of the fetched tree, said as a
    host's problem rather than passed over, as a host's reports behind one would be)."""
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError:
        return [], []
    out: List[str] = []
    links: List[str] = []
    for entry in entries:
        if entry.is_symlink() and not entry.name.endswith(".json"):
            links.append(entry.path)
        elif entry.is_dir(follow_symlinks=False):
            if depth < MAX_DEPTH:
                inside, deeper = _walk(entry.path, depth + 1)
                out += inside
                links += deeper
        elif entry.name.endswith(".json"):
            out.append(entry.path)
        if len(out) > MAX_REPORTS:
            break
    return out, links


def _unreadable(host: str, where: str, why: str) -> Report:
    return Report(host, where, None, "error", 3, None, None, [], why, "")


def read(path: str, place: str, home: str = "") -> Report:
    """The report in path, or one whose problem says why it is none (unreadable, too big, not
    JSON, a key twice, not a smoke.py report, another user's, more than this host's memory
    holds); place names the host when the report cannot, home is its host directory."""
    from checks import ConfigError
    from checks.config import parse_json

    data, problem = _bytes(path)
    if problem:
        return _unreadable(place, path, problem)
    try:
        doc = parse_json(data.decode("utf-8"), path)
        problem = _not_a_report(doc)
        if problem:
            return _unreadable(place, path, problem)
        from checks.summary.load import slim
        results = [slim(result) for result in doc["results"]]
    except UnicodeDecodeError:
        return _unreadable(place, path, "not JSON: not UTF-8 text")
    except ConfigError as exc:  # its message names the file first: said already
        hint = "not JSON (a --format text report? summary reads the JSON one): " \
            if data.lstrip()[:9] == b"smoke.py " else ""
        return _unreadable(place, path, hint + str(exc)[len(path):].lstrip(": "))
    except MemoryError:  # this host's limit (ulimit -v), not the report's fault: the next may still fit
        return _unreadable(place, path, MEMORY % (len(data) >> 20))
    host = next((doc[key] for key in ("instance", "host") if isinstance(doc.get(key), str) and doc[key].strip()),
                place)
    return Report(host, path, str(doc.get("command")), doc["status"], doc.get("exit_code"), doc.get("started_at"),
                  doc.get("duration_ms"), results, None, home)


def _bytes(path: str) -> Tuple[bytes, str]:
    """(the bytes of a report file, "") or (b"", why it is not read). As a history is read: only
    what no user but us and root could have written, judged on the file opened (its owner, its
    mode) and on each directory on its way (fsio.locate's steady walk: a directory another user
    owns, or can write and is not sticky, could hold any report they like, or a link of theirs)."""
    import stat

    from checks import fsio

    try:
        dir_fd, name = fsio.locate(path, steady=True)
    except fsio.Refused as exc:  # its own advice (where to keep a state directory) is not for a report
        return b"", "not read: %s; %s" % (fsio.why(exc).rsplit(": ", 1)[0], TRUST)
    except OSError as exc:
        return b"", "cannot read it: %s" % fsio.why(exc)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        return b"", "cannot read it: %s" % fsio.why(exc)
    finally:
        os.close(dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a FIFO no one writes, /dev/zero: refused, never waited for
            return b"", "cannot read it: not a regular file"
        others = fsio.written_by_others(info)
        if others:
            return b"", "not read: it %s; %s" % (others, TRUST)
        if info.st_size > MAX_REPORT:
            return b"", BIG
        data = fsio.read_bounded(fd, MAX_REPORT)
    except OSError as exc:
        return b"", "cannot read it: %s" % fsio.why(exc)
    except MemoryError:
        return b"", MEMORY % (info.st_size >> 20)
    finally:
        os.close(fd)
    return (b"", BIG) if len(data) > MAX_REPORT else (data, "")


def _not_a_report(doc: Any) -> Optional[str]:
    if not isinstance(doc, dict) or "schema" not in doc:
        return "not a smoke.py report (no schema %s)" % SCHEMA
    if doc["schema"] != SCHEMA:
        from checks.model import cut
        return "schema %s, not %s: not a report this smoke.py reads" % (cut(str(doc["schema"]), 40), SCHEMA)
    if doc.get("status") not in ("pass", "warn", "fail", "error") or not isinstance(doc.get("results"), list):
        return "not a smoke.py report (no status and results)"
    for i, result in enumerate(doc["results"]):
        if not isinstance(result, dict) or not isinstance(result.get("name"), str) \
                or result.get("status") not in _RANK:
            return "not a smoke.py report: results[%d] has no name and status" % i
    return None


def status_of(report: Report) -> str:
    """A host's status as its report says: pass, warn, fail or error (an interrupted run, or a
    file that is no report, could not be evaluated)."""
    return report.status if report.problem is None else "error"


def hosts(reports: List[Report]) -> List[Dict[str, Any]]:
    """A row per host, the worst first: its status (the worst of its reports), its reports
    (file, command, status, when) and the checks it misses (fail, error, warn)."""
    rows: Dict[str, Dict[str, Any]] = {}
    for report in reports:
        row = rows.setdefault(report.host, {"host": report.host, "status": "pass", "reports": [], "failing": [],
                                            "warning": [], "counts": collections.Counter()})
        row["reports"].append({"file": report.where, "command": report.command, "status": status_of(report),
                               "exit_code": report.exit_code, "started_at": report.started_at,
                               "duration_ms": report.duration_ms, "problem": report.problem})
        if _RANK[status_of(report)] < _RANK[row["status"]]:
            row["status"] = status_of(report)
        for result in report.results:
            row["counts"][result["status"]] += 1
            if result["status"] in ("fail", "error"):
                row["failing"].append(result["name"])
            elif result["status"] == "warn":
                row["warning"].append(result["name"])
    out = []
    for row in rows.values():
        row["counts"] = {status: row["counts"].get(status, 0) for status in ("pass", "warn", "fail", "error", "skip")}
        out.append(row)
    return sorted(out, key=lambda row: (_RANK[row["status"]], -len(row["failing"]), row["host"]))


def checks(reports: List[Report], order: List[str]) -> List[Dict[str, Any]]:
    """A row per check (section and name), those failing on the most hosts first: its status
    on each host of order (None where the host has no such check, the worst where it has it
    twice), the hosts it fails on and the first of their messages."""
    rows: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for report in reports:
        for result in report.results:
            key = (str(result.get("section", "")), result["name"])
            row = rows.setdefault(key, {"name": result["name"], "section": key[0], "kind": result.get("kind"),
                                        "on": {}, "message": None})
            before = row["on"].get(report.host)
            if before is None or _RANK[result["status"]] < _RANK[before]:
                row["on"][report.host] = result["status"]
            if result["status"] in ("fail", "error") and row["message"] is None:
                row["message"] = "%s: %s" % (report.host, result.get("message") or result["status"])
    out = []
    for row in rows.values():
        on = row.pop("on")
        row["statuses"] = [on.get(host) for host in order]
        for status in ("fail", "error", "warn", "pass", "skip"):
            row[status] = [host for host in order if on.get(host) == status]
        out.append(row)
    return sorted(out, key=lambda row: (-len(row["fail"]) - len(row["error"]), -len(row["warn"]), row["section"],
                                        row["name"]))


def duplicates(reports: List[Report]) -> List[str]:
    """What to say of hosts with more than one report of a command: both count."""
    seen: Dict[Tuple[str, Any], List[str]] = collections.defaultdict(list)
    for report in reports:
        if report.problem is None:
            seen[(report.host, report.command)].append(report.where)
    return ["host %s has %d %s reports (%s): each counts; give each run its own --instance NAME to tell them "
            "apart" % (host, len(files), command, ", ".join(files)) for (host, command), files in seen.items()
            if len(files) > 1]


def strays(reports: List[Report]) -> List[str]:
    """What to say of a host whose reports come from two host directories: DIR/h4's report
    named h1 by its --instance makes h4 no host of its own, which must not pass unsaid."""
    homes: Dict[str, List[str]] = collections.defaultdict(list)
    for report in reports:
        if report.problem is None and report.home and report.home not in homes[report.host]:
            homes[report.host].append(report.home)
    return ["host %s's reports come from %d host directories (%s): a report is named by its --instance (else its "
            "host name), so a directory named otherwise is no host of its own here; was a run given another host's "
            "--instance?" % (host, len(places), ", ".join(places)) for host, places in homes.items() if len(places) > 1]


def verdict(statuses: List[str]) -> Tuple[str, int]:
    """The fleet's status and exit code, as a run's verdict is told from its checks: any fail is
    a fail (1), else any error is an error (3: a host could not be evaluated, or nothing was),
    else a warn or a pass (0)."""
    if not statuses or "fail" not in statuses and "error" in statuses:
        return "error", 3
    if "fail" in statuses:
        return "fail", 1
    return ("warn" if "warn" in statuses else "pass"), 0
