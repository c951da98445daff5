"""resources: memory, CPU, disk and load of this host, from /proc and statvfs.

Facts: memory_percent, cpu_percent (sampled over cpu_window_s, and only when a
condition reads it: sampling takes that long), disk_percent (the fullest of `paths`)
with disks {path: percent}, load1, load5, load15, cpus.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Tuple

from checks import CheckError, ConfigError
from checks.config import check_os_text

NAME = "resources"
# A busy CPU is no fault (a host running a deploy is busy): its use is a fact to expect on, not a default.
DEFAULT_EXPECT = ("memory_percent < 90", "disk_percent < 90")
# all it can give: a condition on another fact is a typo, exit 2 at load
FACTS = ("memory_percent", "cpu_percent", "disk_percent", "disks", "cpus", "load1", "load5", "load15")


def load(fields) -> Dict[str, Any]:
    paths = fields.strings("paths", ["/"])
    if not paths:
        raise ConfigError("%s: give at least one path" % fields.at("paths"))
    for i, path in enumerate(paths):
        check_os_text(path, "%s[%d]" % (fields.at("paths"), i))
    return {"paths": paths, "cpu_window_s": fields.number("cpu_window_s", 0.5, 0, 60),
            "cpu": "cpu_percent" in fields.subjects}


def target(params) -> str:
    return "memory, %sdisk %s" % ("cpu, " if params["cpu"] else "", ",".join(params["paths"]))


def probe(params, timeout: float, ctx) -> Dict[str, Any]:
    facts: Dict[str, Any] = {"memory_percent": memory_percent()}
    if params["cpu"]:
        facts["cpu_percent"] = cpu_percent(min(params["cpu_window_s"], max(0.0, timeout / 2)))
    disks = {path: disk_percent(path) for path in params["paths"]}
    facts.update(disk_percent=max(disks.values()), disks=disks, cpus=os.cpu_count())
    facts["load1"], facts["load5"], facts["load15"] = [round(x, 2) for x in os.getloadavg()]
    return facts


def memory_percent() -> float:
    info = {}
    for line in _read_lines("/proc/meminfo"):
        key, _, value = line.partition(":")
        info[key] = int(value.split()[0]) if value.split() else 0
    total = info.get("MemTotal", 0)
    available = info.get("MemAvailable", info.get("MemFree", 0) + info.get("Cached", 0))
    return round(100.0 * (total - available) / total, 1) if total else 0.0


def cpu_percent(window: float) -> float:
    busy1, total1 = _cpu_times()
    time.sleep(window)
    busy2, total2 = _cpu_times()
    return round(100.0 * (busy2 - busy1) / (total2 - total1), 1) if total2 > total1 else 0.0


def _cpu_times() -> Tuple[int, int]:
    fields = [int(v) for v in _read_lines("/proc/stat")[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user time
    return total - idle, total


def disk_percent(path: str) -> float:
    """Used space as `df` shows it: blocks reserved for root count as unavailable."""
    try:
        st = os.statvfs(path)
    except OSError as exc:
        raise CheckError("cannot stat filesystem %s: %s" % (path, exc.strerror))
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    usable = used + st.f_bavail * st.f_frsize
    return round(100.0 * used / usable, 1) if usable else 0.0


def _read_lines(path: str) -> List[str]:
    try:
        with open(path) as fh:
            return fh.read(65536).splitlines()
    except OSError as exc:
        raise CheckError("cannot read %s (Linux only): %s" % (path, exc.strerror))
