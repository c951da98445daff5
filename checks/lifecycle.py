"""Lifecycle: what a run starts is stopped, even when smoke.py itself is killed.

Cleanup actions stop a run's process groups on every path our code runs (success,
failure, signals). For the one path where none of it runs, kill -9, a reaper
outlives us: a shell in its own session that reads the list of our live process
groups and, when its stdin reaches end of file (the kernel closes our end of the
pipe as we die), kills them. Linux's parent-death signal would reach only each
group's first process, not what that process started.
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Set

# Keeps only the last list it was sent; at EOF, kills each group in it.
_REAPER = 'last=; while IFS= read -r line; do last=$line; done; [ -z "$last" ] || kill -s KILL -- $last 2>/dev/null'


class _Reaper:
    def __init__(self):
        self._lock = threading.Lock()
        self._groups: Set[int] = set()
        self.internal: Set[int] = set()  # our own helpers' pids, the reaper's among them
        self._proc = None
        self._failed = False

    def own(self, pgid: int, internal: bool) -> None:
        with self._lock:
            self._groups.add(pgid)
            if internal:
                self.internal.add(pgid)
            self._tell()

    def release(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)
            self.internal.discard(pgid)
            self._tell()

    def _tell(self) -> None:
        """Send the whole list: the reaper keeps no state but the last line."""
        if self._failed:
            return
        try:
            if self._proc is None:
                import subprocess

                self._proc = subprocess.Popen(["/bin/sh", "-c", _REAPER], stdin=subprocess.PIPE,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                              start_new_session=True)  # Ctrl-C and hang-ups are ours, not its
                self.internal.add(self._proc.pid)
            self._proc.stdin.write((" ".join("-%d" % g for g in sorted(self._groups)) + "\n").encode())
            self._proc.stdin.flush()
        except OSError:  # no /bin/sh, or it died: the groups' own parent-death signals remain
            self._failed = True


_REAPER_PROCESS = _Reaper()


def own_group(pgid: int, internal: bool = False) -> None:
    """A process group of ours: killed if smoke.py dies before release_group().

    internal: a helper of smoke.py's own (the regex matcher), which a process check must not count.
    """
    _REAPER_PROCESS.own(pgid, internal)


def release_group(pgid: int) -> None:
    """The group is gone (we killed it): its id may be reused, so the reaper must forget it."""
    _REAPER_PROCESS.release(pgid)


def internal_pids() -> Set[int]:
    """The processes smoke.py runs for itself: never evidence about the system under test."""
    return set(_REAPER_PROCESS.internal)
