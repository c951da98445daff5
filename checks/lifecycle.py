"""Lifecycle: what a run starts is stopped, even when smoke.py itself is killed.

A run owns one Cleanup (handed to probes in the run context) and one Signals;
SIGHUP, SIGINT and SIGTERM interrupt it with Interrupted. Cleanup actions stop a
run's process groups on every path our code runs (success, failure, signals).
For the one path where none of it runs, kill -9, a reaper outlives us: a shell in
its own session that reads what the run owns from a pipe and, when its stdin
reaches end of file (the kernel closes our end of the pipe as we die), kills it.
Linux's parent-death signal would reach only each group's first process, not what
that process started. A process that leaves its session (setsid) is re-parented to
us, a child subreaper, and killed when the run ends; after kill -9, the reaper finds it
by the run's mark in its environment, or, one that cleared it, in the record of our
descendants kept several times a second (watch).

A step that changes the system for good (a rollback's command) starts its process with
start_unowned(): no mark, not recorded, and what it leaves running goes past us to init
(we are no subreaper meanwhile), so nothing of ours ever kills it; only its own group
is killed, when it times out or the run is stopped while it runs.
"""

from __future__ import annotations

import os
import threading
import time

from checks import procfs

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Callable, Dict, List, Optional, Set, Tuple

    from checks.model import Result

try:  # the C module: signal.py builds three enums on import, 2 ms of a one-check run
    import _signal as signal
except ImportError:
    import signal

# The run's state, sent whole each time it changes, as lines ending with a line ".": "g PGID" (a
# process group of ours: it, and all that its members started, are killed), "l PGID" (the group of a
# process whose leftovers are not ours: only the group is killed), "r PID START" (a process seen
# below us, by its start time: killed if it is still that process), "m MARK" (every process
# carrying SMOKE_PY_RUN=MARK in its environment is ours), "c PID START" (a process we stopped:
# continued) and "d PATH" (a directory of ours: removed). At end of file, smoke.py is gone (even by
# kill -9): the reaper acts on the last state. A group's session counts as the group (a process
# that moved to a group of its own, setpgid, job control, is found by its session). What is ours
# is stopped (SIGSTOP) and looked at again, until no new child of it appears; then all is killed.
MARK_VARIABLE = "SMOKE_PY_RUN"
_REAPER = r"""
state=; next=
while IFS= read -r line; do
  if [ "$line" = . ]; then state=$next; next=; else next="$next$line
"; fi
done
[ -n "$state" ] || exit 0
items() { set -f; IFS='
'; for item in $state; do case $item in "$1 "*) printf '%s
' "${item#$1 }";; esac; done; set +f; IFS=' '; }
for item in $(items c | tr ' ' '_'); do
  pid=${item%_*}; start=${item#*_}; s=
  read -r s 2>/dev/null < "/proc/$pid/stat" || continue
  set -- ${s##*) }
  [ "${20}" = "$start" ] && kill -s CONT "$pid" 2>/dev/null
done
mark=$(items m); marked=
[ -z "$mark" ] || marked=$(grep -lsF "@VARIABLE@=$mark" /proc/[0-9]*/environ | sed 's#^/proc/##; s#/environ$##')
ours=" $(items g | tr '\n' ' ')"; left=" $(items l | tr '\n' ' ')"; seen=" $(items r | tr ' \n' '_ ')"
marked=" $(echo "$marked" | tr '\n' ' ')"
table() {
  for f in /proc/[0-9]*/stat; do
    read -r s 2>/dev/null < "$f" || continue; p=${f#/proc/}; set -- ${s##*) }; echo "${p%/stat} $2 $3 $4 ${20}"
  done
}
victims=
for round in 1 2 3 4 5 6 7 8; do
  found=$(table | awk -v self=$$ -v ours="$ours" -v left="$left" -v seen="$seen" -v marked="$marked" '
    { ppid[$1] = $2
      if (index(left, " " $3 " ") || index(left, " " $4 " ")) out[$1] = 1
      if (index(ours, " " $3 " ") || index(ours, " " $4 " ") || index(seen, " " $1 "_" $5 " ") ||
          index(marked, " " $1 " ")) own[$1] = 1 }
    END { do { n = 0; for (p in ppid) if (!(p in own) && (ppid[p] in own)) { own[p] = 1; n++ } } while (n)
          for (p in own) out[p] = 1
          for (p in out) if (p != self && p + 0 > 1) print p }' | sort -n | tr '\n' ' ')
  [ "$found" = "$victims" ] && break
  victims=$found
  kill -s STOP $victims 2>/dev/null
done
[ -z "$victims" ] || kill -s KILL $victims 2>/dev/null
items d | while IFS= read -r dir; do rm -rf -- "$dir"; done
""".replace("@VARIABLE@", MARK_VARIABLE)
_PR_SET_CHILD_SUBREAPER = 36
WATCH_S = 0.25  # how often the record of our descendants is renewed (more seldom on a host with very many processes)
_INTERNAL: Set[Tuple[str, ...]] = set()  # the command lines of our own helpers: never "a process" of the system


class _Reaper:
    """What this run must undo if it dies before it can: told to a shell that outlives it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._groups: Set[int] = set()
        self._unowned: Set[int] = set()
        self._stopped: Dict[int, int] = {}
        self._dirs: Set[str] = set()
        self._seen: Dict[int, int] = {}
        self._proc = None
        self._failed = False
        self.mark = os.urandom(8).hex()

    def change(self, kind: str, item: Any, add: bool) -> None:
        with self._lock:
            store = {"g": self._groups, "l": self._unowned, "c": self._stopped, "d": self._dirs}[kind]
            if not add:
                store.discard(item) if isinstance(store, set) else store.pop(item, None)
            elif isinstance(store, set):
                store.add(item)
            else:
                store[item[0]] = item[1]
            self._tell()

    def seen(self, found: Dict[int, int], alive: Dict[int, Tuple[int, int]]) -> None:
        """The processes found below us now, kept with those seen before that are still alive
        (one that left for init during a step that let go of its orphans is still ours)."""
        with self._lock:
            seen = {pid: start for pid, start in self._seen.items() if alive.get(pid, (0, None))[1] == start}
            seen.update(found)
            if seen != self._seen:
                self._seen = seen
                self._tell()

    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def _tell(self) -> None:
        """Send the whole state: the reaper keeps only the last one."""
        if self._failed:
            return
        lines = ["m " + self.mark] + ["g %d" % g for g in sorted(self._groups)]
        lines += ["l %d" % g for g in sorted(self._unowned)] + ["r %d %d" % item for item in sorted(self._seen.items())]
        lines += ["c %d %d" % item for item in sorted(self._stopped.items())]
        lines += ["d " + path for path in sorted(self._dirs) if "\n" not in path]
        try:
            if self._proc is None:
                import subprocess

                argv = ["/bin/sh", "-c", _REAPER]
                internal_command(argv)
                self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"},
                                              start_new_session=True)  # Ctrl-C and hang-ups are ours, not its
            self._proc.stdin.write(("\n".join(lines) + "\n.\n").encode("utf-8", "surrogateescape"))
            self._proc.stdin.flush()
        except OSError:  # no /bin/sh, or it died: the groups' own parent-death signals remain
            self._failed = True


class _Descendants:
    """Which processes below us are the run's, and who adopts their orphans.

    We are a child subreaper (adopt()), so what our processes leave behind becomes our child,
    and the record of everything below us is renewed every WATCH_S for the reaper: after
    kill -9, what cleared its environment and left its session is still known by pid and start
    time. While an unowned process runs (start_unowned), we are no subreaper: what it leaves
    goes to init, and its tree is never recorded. The window that remains: a process of ours
    that is born and escapes to init within one renewal, during such a step, or that clears its
    mark and escapes within one renewal before kill -9.
    """

    def __init__(self):
        self.lock = threading.Lock()  # held across a scan, and across the start of an unowned process
        self.adopting = False
        self.roots: Set[int] = set()  # unowned processes running now: not ours, nor what is below them
        self.watching = False

    def adopt(self) -> bool:
        with self.lock:
            if not self.adopting:  # while an unowned process runs, from when it ends
                self.adopting = bool(procfs.prctl()) and (bool(self.roots) or self._subreaper(True))
            if self.adopting and not self.watching:
                self.watching = True
                try:
                    start_thread(self._watch, "smoke-watch")
                except Exception:  # no thread to be had: the marks and groups still hold
                    pass
            return self.adopting

    def _subreaper(self, on: bool) -> bool:
        call = procfs.prctl()
        return bool(call) and call(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0

    def start_unowned(self, start: Callable[[], Any]) -> Any:
        with self.lock:
            if not self.roots and self.adopting:
                self._subreaper(False)
            try:
                proc = start()
            except BaseException:
                if not self.roots and self.adopting:
                    self._subreaper(True)
                raise
            self.roots.add(proc.pid)
        return proc

    def unowned_ended(self, pid: int) -> None:
        with self.lock:
            self.roots.discard(pid)
            if not self.roots and self.adopting:
                self._subreaper(True)

    def _watch(self) -> None:
        while True:
            began = time.monotonic()
            self.record()
            time.sleep(max(WATCH_S, 20 * (time.monotonic() - began)))  # at most a twentieth of a CPU

    def record(self) -> None:
        """Tell the reaper what is below us now (pid and start time), but our helper and the
        unowned processes' trees."""
        with self.lock:
            alive = procfs.family()
            spared = self.roots | {_REAPER_PROCESS.pid()}
            below: Dict[int, List[int]] = {}
            for pid, (ppid, _) in alive.items():
                below.setdefault(ppid, []).append(pid)
            found: Dict[int, int] = {}
            todo = list(below.get(os.getpid(), ()))
            while todo:
                pid = todo.pop()
                if pid not in spared and pid not in found:
                    found[pid] = alive[pid][1]
                    todo += below.get(pid, ())
        _REAPER_PROCESS.seen(found, alive)


class Interrupted(BaseException):
    """Raised in the main thread by SIGHUP/SIGINT/SIGTERM; on its way out, each level raises it
    again carrying what was done (carrying()): the partial results and metrics."""

    def __init__(self, signum: int, results: Optional[List[Result]] = None,
                 metrics: Optional[Dict[str, Any]] = None):
        super().__init__(signum)
        self.signum, self.results, self.metrics = signum, list(results or ()), dict(metrics or {})

    def carrying(self, results: List[Result], metrics: Optional[Dict[str, Any]] = None) -> "Interrupted":
        """The same interruption, with these results (and metrics: {section: numbers})."""
        return Interrupted(self.signum, results, self.metrics if metrics is None else metrics)


class Cleanup:
    """Undo actions for what a run created, each with what it undoes ("process group 4242
    of `sleep 60`"); run on success, failure, exception and signals.

    After an interrupt, run_all(close=True) also closes the registry: a probe that
    creates something after that (a worker still busy) has it undone at once.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._actions: Dict[int, Tuple[Callable[[], Any], str, Any]] = {}
        self._next = 0
        self._closed = False

    def add(self, action: Callable[[], Any], what: str, scope: Any = None) -> int:
        with self._lock:
            if not self._closed:
                self._next += 1
                self._actions[self._next] = (action, what, scope)
                return self._next
        action()
        return 0

    def remove(self, token: int) -> None:
        with self._lock:
            self._actions.pop(token, None)

    def scope(self) -> "Scope":
        """A part of the registry that a step sequence undoes itself when it ends (a deploy's
        spawned servers, at the end of its target), with the run's on every other path."""
        return Scope(self)

    def run_all(self, close: bool = False) -> List[Tuple[str, str]]:
        """Run every pending action, newest first; (what was left behind, why) for each
        that failed. Never raises: one failure must not stop the rest."""
        return [(what, why) for what, _, why, _ in self.run(close=close) if why is not None]

    def run(self, scope: Any = None, close: bool = False) -> List[Tuple[str, Any, Optional[str], float]]:
        """Run the pending actions (of one scope, or all), newest first: (what, what the action
        said it did, why it failed or None, the seconds it took) for each."""
        import time

        with self._lock:
            actions = sorted((token, item) for token, item in self._actions.items()
                             if scope is None or item[2] is scope)
            for token, _ in actions:
                del self._actions[token]
            self._closed = self._closed or close
        done = []
        for _, (action, what, _) in reversed(actions):
            began = time.monotonic()
            try:
                said, why = action(), None
            except Exception as exc:
                said, why = None, str(exc) or type(exc).__name__
            done.append((what, said, why, time.monotonic() - began))
        return done


class Scope:
    """A Cleanup seen through one scope: what is added here is undone by run(), or by the run's."""

    def __init__(self, cleanup: Cleanup):
        self.cleanup = cleanup

    def add(self, action: Callable[[], Any], what: str) -> int:
        return self.cleanup.add(action, what, self)

    def remove(self, token: int) -> None:
        self.cleanup.remove(token)

    def run(self) -> List[Tuple[str, Any, Optional[str], float]]:
        return self.cleanup.run(self)


class Signals:
    """SIGHUP/SIGINT/SIGTERM during a run: the first raises Interrupted in the main thread while
    armed; every later one is only recorded, so cleanup and the partial report still happen."""

    def __init__(self):
        self.signum: Optional[int] = None
        self.armed = True
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> "Signals":
        try:  # SIGHUP too: a dropped SSH session must not orphan children or lose the report
            for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: the caller owns signals
            pass
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is None:
            self.signum = signum
            if self.armed:
                raise Interrupted(signum)

    def disarm(self) -> None:
        self.armed = False


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread, started; CheckError naming the limit when this host will not give one."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    try:
        thread.start()
    except RuntimeError as exc:  # "can't start new thread": the thread limit (ulimit -u), or memory
        from checks import CheckError
        raise CheckError("%s (this user's process and thread limit, ulimit -u, or memory)" % exc)
    return thread


def shielded(work) -> Tuple[Any, Optional[Interrupted]]:
    """work() in a thread of its own, which no signal interrupts: a cleanup runs to its end.
    A signal meanwhile is kept and returned, for the caller to raise once it is done; an
    exception in work() is raised here."""
    box: list = []
    done = threading.Event()

    def target():
        try:
            box.append((True, work()))
        except BaseException as exc:  # handed to the caller's thread
            box.append((False, exc))
        finally:
            done.set()

    from checks import CheckError
    try:
        start_thread(target, "smoke-shielded")
    except CheckError:  # no thread to be had: done here, unshielded, rather than not at all
        target()
    late = None
    while not done.is_set():
        try:
            done.wait(0.2)
        except Interrupted as exc:
            late = late or exc
    ok, value = box[0]
    if not ok:
        raise value
    return value, late


_REAPER_PROCESS = _Reaper()
_DESCENDANTS = _Descendants()


def own_group(pgid: int, unowned: bool = False) -> None:
    """A process group of ours: killed if smoke.py dies before release_group(), with all its
    members started; unowned (start_unowned): the group alone, not what it left running."""
    _REAPER_PROCESS.change("l" if unowned else "g", pgid, True)


def release_group(pgid: int) -> None:
    """The group is gone (we killed it), or what is left of it is not ours: its id may be
    reused, so the reaper must forget it."""
    _REAPER_PROCESS.change("g", pgid, False)
    _REAPER_PROCESS.change("l", pgid, False)


def own_stopped(pid: int, start_time: int) -> None:
    """A process not ours that we stopped (SIGSTOP): continued if smoke.py dies first. Its start
    time says it is still that process, not another that got its pid."""
    _REAPER_PROCESS.change("c", (pid, start_time), True)


def release_stopped(pid: int) -> None:
    _REAPER_PROCESS.change("c", pid, False)


def own_dir(path: str) -> None:
    """A directory of the run's (credentials): removed if smoke.py dies before release_dir()."""
    _REAPER_PROCESS.change("d", os.path.abspath(path), True)


def release_dir(path: str) -> None:
    _REAPER_PROCESS.change("d", os.path.abspath(path), False)


def start_unowned(start: Callable[[], Any]) -> Any:
    """start() (a Popen) for a step whose purpose is to change the system (a rollback's command
    that starts a daemon): what it leaves running is not the run's. Until unowned_ended(its pid),
    what it orphans goes past us to init, and nothing below it is recorded for the reaper."""
    return _DESCENDANTS.start_unowned(start)


def unowned_ended(pid: int) -> None:
    """The unowned process has ended (it was waited for): orphans are ours again."""
    _DESCENDANTS.unowned_ended(pid)


def run_mark() -> Dict[str, str]:
    """The environment entry every process of the run carries: the reaper finds by it those
    that left their group and session (setsid), after kill -9 of smoke.py too."""
    return {MARK_VARIABLE: _REAPER_PROCESS.mark}


def internal_command(argv) -> None:
    """Say that our children with this command line are smoke.py's own helpers."""
    _INTERNAL.add(tuple(argv))


def is_internal(ppid: int, argv) -> bool:
    """Whether a process is one of our own helpers: our child, with a helper's command line
    (known before it is started, so a helper that has just started is never counted)."""
    return ppid == os.getpid() and tuple(argv) in _INTERNAL


def adopt_orphans() -> bool:
    """Become a child subreaper (Linux): what our children leave behind becomes our child; and
    keep the record of everything below us for the reaper."""
    return _DESCENDANTS.adopt()


def strays(before) -> List[Tuple[int, List[str]]]:
    """Our children that were not there `before` (a set of pids) and are not our helpers:
    what a process left behind when it escaped its group (setsid) and was re-parented to us."""
    return [(pid, argv) for pid, argv in procfs.children()
            if pid not in before and not is_internal(os.getpid(), argv) and procfs.alive(pid)]


def kill_orphans() -> None:
    """At the end of a run: kill the descendants that left their group (setsid) and were
    re-parented to us, with their own groups; a few rounds, as their children come to us in turn."""
    if not _DESCENDANTS.adopting:
        return
    for _ in range(5):
        orphans = [pid for pid, argv in procfs.children() if not is_internal(os.getpid(), argv)]
        if not orphans:
            return
        for pid in orphans:
            kill_child(pid)


def kill_child(pid: int) -> None:
    """SIGKILL a child of ours and its own group (never ours), and collect it."""
    import signal

    try:
        group = os.getpgid(pid)
        if group != os.getpgrp():
            os.killpg(group, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (OSError, ChildProcessError):
        pass
