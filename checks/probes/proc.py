"""Processes as a probe: run one to completion, or spawn a long-lived one, and never
leave either behind (but what a command that changes the system leaves running:
run(leave_running=True)).

Each runs in its own process group (our Ctrl-C is ours to handle, and a kill reaches
everything it started), registered for cleanup the moment it exists and with the
reaper (lifecycle), with a parent-death signal set; its output is capped (run) or goes
to a log file (spawn). The caller's own faults (no such program, no fd left) raise
CheckError; anything the process does is a result.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Callable, Dict, List, Optional, Tuple, Union

from checks import CheckError, fsio, lifecycle, procfs

_PR_SET_PDEATHSIG = 1
PID_MAX = 4194304  # Linux PID_MAX_LIMIT
STOP_GRACE_S = 5.0  # from SIGTERM to SIGKILL when a spawned process is stopped


def describe(argv: Union[str, List[str]]) -> str:
    """A command line as a shell reads it, in double quotes where needed: shlex.quote's '"'"'
    would split a secret into pieces that masking cannot recognise."""
    if isinstance(argv, str):
        return argv
    import re
    return " ".join(word if word and all(char.isalnum() or char in "@%+=:,./_-" for char in word)
                    else '"%s"' % re.sub(r'(["\\$`])', r"\\\1", word) for word in argv)


class Finished:
    """What a run() ended with: exit_code (None: timed out), stdout, stderr (capped text), seconds."""

    __slots__ = ("exit_code", "stdout", "stderr", "seconds")

    def __init__(self, exit_code, stdout, stderr, seconds):
        self.exit_code, self.stdout, self.stderr, self.seconds = exit_code, stdout, stderr, seconds


def run(argv: Union[str, List[str]], timeout: float, cleanup=None, shell: bool = False,
        env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None, max_output: int = 65536,
        leave_running: bool = False) -> Finished:
    """Run to completion or timeout; the whole group is killed when it returns, so no orphan
    outlives it, and a background child still holding the pipes cannot keep the drain waiting.
    leave_running: what it leaves running once it has exited by itself (a daemon it started) is
    the system's, never killed by this run (lifecycle.start_unowned); a timeout or a signal still
    kills its group."""
    started = time.monotonic()
    proc = _start(argv, shell, env, cwd, subprocess.PIPE, subprocess.PIPE, unowned=leave_running)
    token = cleanup.add(functools.partial(_kill, proc), "process group %d of %s" % (proc.pid, describe(argv))) \
        if cleanup else None
    exit_code = None
    try:
        out, err = _Capped(proc.stdout, max_output), _Capped(proc.stderr, max_output)
        try:
            exit_code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    finally:
        if exit_code is None or not leave_running:
            _kill(proc)
        if token:
            cleanup.remove(token)
        lifecycle.release_group(proc.pid)
        if leave_running:
            lifecycle.unowned_ended(proc.pid)
    drained = time.monotonic() + 1.0
    out.join(drained)
    err.join(drained)
    if out.out_of_memory or err.out_of_memory:
        raise CheckError("out of memory keeping %s's output (a limit of this host): lower max_output"
                         % describe(argv))
    return Finished(exit_code, out.text(), err.text(), time.monotonic() - started)


class Spawned:
    """A long-lived process group of ours, its output in a log file; stop() ends it."""

    def __init__(self, proc, argv, log_path: str, cleanup, token: int):
        self.proc, self.pid, self.argv, self.log_path = proc, proc.pid, argv, log_path
        self._cleanup, self._token = cleanup, token
        self.stopped = ""

    def running(self) -> bool:
        return self.proc.poll() is None

    def signal_all(self, signum: int) -> None:
        """Signal the whole session it leads: a worker started through a wrapper (sh -c, npm,
        a shell with job control that gives its children groups of their own) is all of
        them. OSError when it cannot be sent."""
        os.killpg(self.pid, signum)
        signal_session(self.pid, signum)

    def stop_said(self) -> Tuple[int, str]:
        """Stop it, as a cleanup action: (its pid, how it went)."""
        self.stop()
        return self.pid, self.stopped

    def stop(self, grace: float = STOP_GRACE_S) -> Optional[int]:
        """SIGTERM to the group, SIGKILL after grace seconds; the exit code (negative: a signal).
        self.stopped says how it went (for the run's report)."""
        began, running = time.monotonic(), self.running()
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except OSError:
            pass
        try:
            self.proc.wait(grace)
            self.stopped = ("stopped by SIGTERM in %.2fs" % (time.monotonic() - began)) if running else \
                "had exited by itself (code %s)" % self.proc.returncode
        except subprocess.TimeoutExpired:
            self.stopped = "did not stop on SIGTERM within %gs: killed (SIGKILL)" % grace
        _kill(self.proc)
        signal_session(self.pid, signal.SIGKILL)  # what moved to a group of its own inside the session
        if self._token and self._cleanup:
            self._cleanup.remove(self._token)
        lifecycle.release_group(self.pid)
        return self.proc.returncode


def stop_all(spawned: List[Spawned], grace: float = STOP_GRACE_S) -> List[Spawned]:
    """Stop many at once: SIGTERM to every group, one shared grace, then SIGKILL to what is
    left (one by one, 256 workers that ignore SIGTERM would take 21 minutes). Those whose
    process has still not exited."""
    for one in spawned:
        for signum in (signal.SIGTERM, signal.SIGCONT):  # a stopped process gets its SIGTERM once resumed
            try:
                os.killpg(one.pid, signum)
            except OSError:
                pass
    ends = time.monotonic() + grace
    for one in spawned:
        try:
            one.proc.wait(max(0.0, ends - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    return [one for one in spawned if one.stop(0) is None]


def spawn(argv: Union[str, List[str]], log_path: str, cleanup, shell: bool = False,
          env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None, fresh: bool = False) -> Spawned:
    """Start a process that outlives this call, stdout and stderr appended to log_path (begun
    anew with fresh: an earlier run's lines are never this run's); it is stopped by the run's
    cleanup unless stop() comes first, and that cleanup says how it went (stop()'s account)."""
    try:
        log = fsio.open_append(log_path, fresh=fresh)
    except OSError as exc:
        raise CheckError("cannot open the log %s: %s" % (log_path, fsio.why(exc)))
    try:  # no parent-death signal: Linux sends it when the starting *thread* ends; the reaper covers us
        proc = _start(argv, shell, env, cwd, log, subprocess.STDOUT, death_signal=False)
    finally:
        os.close(log)
    spawned = Spawned(proc, argv, log_path, cleanup, 0)
    spawned._token = cleanup.add(spawned.stop_said, "process group %d of %s" % (proc.pid, describe(argv)))
    return spawned


def _start(argv, shell, env, cwd, stdout, stderr, death_signal=True, unowned=False):
    """The process, in a session of its own, registered with the reaper; unowned: without the
    run's mark, and what it leaves running is not the run's (lifecycle.start_unowned)."""
    environ = dict(os.environ, **(env or {}))
    if not unowned:
        environ.update(lifecycle.run_mark())  # ours wherever it goes (setsid)
        lifecycle.adopt_orphans()  # what the process leaves behind with setsid comes back to us
    popen = functools.partial(subprocess.Popen, argv, shell=shell, env=environ, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=stdout, stderr=stderr, start_new_session=True,
                              preexec_fn=die_with_parent() if death_signal else None)
    try:
        proc = lifecycle.start_unowned(popen) if unowned else popen()
    except FileNotFoundError as exc:
        missing = exc.filename if exc.filename else (argv if shell else argv[0])
        if cwd and not os.path.isdir(cwd):
            missing = cwd
        raise CheckError("cannot run: %s not found" % missing)
    except OSError as exc:
        raise CheckError("cannot run %s: %s" % (describe(argv), exc.strerror or exc))
    lifecycle.own_group(proc.pid, unowned)  # gone with us, even after kill -9
    return proc


def signal_session(sid: int, signum: int) -> None:
    """Signal every process of a session (read from /proc), whatever group each is in."""
    for pid in procfs.in_session(sid):
        try:
            os.kill(pid, signum)
        except OSError:
            pass


def read_small(path: str, size: int, what: str = "") -> bytes:
    """The first `size` bytes of a regular file; CheckError "cannot read WHAT PATH: why" when
    it is not one (a FIFO would block the run, /dev/zero is endless)."""
    try:
        return fsio.read_head(path, size)
    except OSError as exc:
        raise CheckError("cannot read %s%s: %s" % (what, path, fsio.why(exc)))


def read_pidfile(path: str) -> Tuple[Optional[int], Optional[str]]:
    """(the live pid a pidfile names, None) or (None, why not, in one line); CheckError
    when it cannot be read at all."""
    from checks.model import cut
    if not os.path.lexists(path):
        return None, "%s does not exist" % path
    text = read_small(path, 64, "pidfile ").decode("ascii", errors="replace").strip()
    # pid 0 would make kill() signal our own process group; beyond PID_MAX_LIMIT, kill() overflows.
    if not text.isdigit() or not 0 < int(text) <= PID_MAX:
        return None, "%s holds %r, not a pid" % (path, cut(text, 20))
    if not procfs.alive(int(text)):
        return None, "%s names pid %s, which is not running" % (path, text)
    return int(text), None


@functools.lru_cache(maxsize=None)
def die_with_parent() -> Optional[Callable[[], None]]:
    """A preexec_fn asking Linux to SIGKILL the child when smoke.py dies, even by kill -9.

    Its own process group escapes our Ctrl-C and cleanup kills it on every other path;
    this covers the one path where no code of ours runs. None where prctl is missing.
    """
    prctl = procfs.prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # we died before the signal was armed
            os._exit(1)
    return arm


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(1)
    except subprocess.TimeoutExpired:
        pass


class _Capped:
    """Drains a pipe in a thread, keeping the first `cap` bytes, so output never fills memory."""

    def __init__(self, pipe, cap: int):
        self.data, self.dropped, self._pipe, self._cap = bytearray(), 0, pipe, cap
        self.out_of_memory = False
        self._thread = lifecycle.start_thread(self._drain, "smoke-drain")

    def _drain(self) -> None:
        with self._pipe:
            for chunk in iter(lambda: self._pipe.read1(65536), b""):
                room = self._cap - len(self.data)
                try:
                    self.data += chunk[:max(0, room)]
                except MemoryError:  # our limit (ulimit -v), not the command's: keep draining, keep nothing
                    self.out_of_memory, self._cap, self.data = True, 0, bytearray()
                self.dropped += max(0, len(chunk) - max(0, room))

    def join(self, deadline: float) -> None:
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def text(self) -> str:
        if not self.dropped:
            return bytes(self.data).decode("utf-8", errors="replace")
        # Cut: decode to the last whole character, or a U+FFFD would hide where a secret's start ends.
        import codecs
        text = codecs.getincrementaldecoder("utf-8")("replace").decode(bytes(self.data), final=False)
        return text + "\n\u2026 (%d more bytes)" % self.dropped
