"""Regular expressions over outside text (bodies, logs, command lines), bounded in time.

CPython's `re` holds the interpreter lock for a whole match, so a pattern that
backtracks badly ((a+)+$ on 'a'*40+'!', or merely .*x on a megabyte) freezes every
thread, signal handlers and the run's deadline included. A pattern that cannot
backtrack (no repetition, no back-reference, no alternation inside a group) costs at
most text length x pattern length, and is matched here when that product is small.
Every other match runs in a helper process that arms a kernel timer before each job,
so the kernel ends a runaway match at its deadline even if smoke.py is gone.
"""

from __future__ import annotations

import atexit
import functools
import marshal
import os
import re
import select
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import List, Optional, Sequence, Tuple

from checks import CheckError
from checks.model import cut

# A match is its group spans (re.Match.regs): ((start, end) of the whole match, then of each group).

_MIN_JOB_S = 0.1  # a pattern is given at least this long, whatever is left of its check's time
_INLINE_STEPS = 4000000  # text x pattern length matched in-process: some tens of milliseconds at most
# The helper reads jobs (pattern, flags, texts, seconds) and answers the spans of each
# text's first match. SIGALRM's default action ends it when a job overruns; stdin at EOF
# (smoke.py gone) ends it when idle; SIGINT from the terminal is smoke.py's to handle.
_HELPER = r"""
import marshal, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGALRM, signal.SIG_DFL)
read, write = sys.stdin.buffer.read, sys.stdout.buffer.write
while True:
    head = read(4)
    if len(head) < 4:
        break
    pattern, flags, texts, seconds = marshal.loads(read(int.from_bytes(head, "big")))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    regex = re.compile(pattern, flags)
    found = [None if m is None else m.regs for m in map(regex.search, texts)]
    signal.setitimer(signal.ITIMER_REAL, 0)
    data = marshal.dumps(found)
    write(len(data).to_bytes(4, "big") + data)
    sys.stdout.buffer.flush()
"""


class RegexTimeout(CheckError):
    """The pattern did not finish in time: we could not judge, so the check is `error`."""


def pattern_problem(pattern: str, flags: int = 0) -> Optional[str]:
    """Why pattern cannot be compiled, or None: for validating a config at load.

    Not only re.error: a{99999999999999999999} overflows, 3000 nested groups recurse.
    """
    try:
        re.compile(pattern, flags)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


def search(pattern: str, text: str, deadline: float, flags: int = 0) -> Optional[Tuple[Tuple[int, int], ...]]:
    """The first match of pattern in text as group spans, or None; RegexTimeout past deadline."""
    return search_each(pattern, [text], deadline, flags)[0]


def search_each(pattern: str, texts: Sequence[str], deadline: float, flags: int = 0) -> List[Optional[Tuple[Tuple[int, int], ...]]]:
    """search() over many texts (log lines, command lines) in one job."""
    if not texts:  # a poll of a quiet log: no job for the helper
        return []
    needed = required_text(pattern, flags)
    if needed and len(texts) > 1:  # lines that cannot match never reach the regex (nor the helper)
        hits = [i for i, text in enumerate(texts) if needed in text]
        found: List[Optional[Tuple[Tuple[int, int], ...]]] = [None] * len(texts)
        if hits:
            for i, spans in zip(hits, _search_all(pattern, [texts[i] for i in hits], deadline, flags)):
                found[i] = spans
        return found
    return _search_all(pattern, texts, deadline, flags)


def _search_all(pattern, texts, deadline, flags):
    if not can_backtrack(pattern) and len(pattern) * sum(map(len, texts)) <= _INLINE_STEPS:
        regex = re.compile(pattern, flags)
        return [None if m is None else m.regs for m in map(regex.search, texts)]
    return _POOL.run((pattern, flags, list(texts)), deadline, pattern)


@functools.lru_cache(maxsize=256)
def required_text(pattern: str, flags: int = 0) -> str:
    """The longest literal every match must contain ("failed (id" in "(?P<worker>\\S+) failed \\(id"),
    or "": a line without it cannot match, and `in` is far cheaper than any regex. Read from
    the pattern's parse: literals in sequence at the top level, or inside plain groups."""
    try:
        from re import _parser as parser  # Python 3.11+
    except ImportError:
        import sre_parse as parser
    try:
        parsed = parser.parse(pattern, flags)
    except Exception:  # whatever the parser says, compile() reports it better
        return ""
    if parsed.state.flags & (re.IGNORECASE | re.VERBOSE):
        return ""
    best, run = "", []

    def walk(items) -> None:
        nonlocal best, run
        for op, value in items:
            name = str(op)
            if name == "LITERAL":
                run.append(chr(value))
                continue
            if name == "SUBPATTERN":  # (group, add_flags, del_flags, pattern) in 3.6+
                if value[1] or value[2]:
                    run = []
                    continue
                walk(value[-1])
                continue
            if len("".join(run)) > len(best):
                best = "".join(run)
            run = []
    walk(parsed)
    if len("".join(run)) > len(best):
        best = "".join(run)
    return best


def can_backtrack(pattern: str) -> bool:
    """Whether matching may take more than text x pattern steps.

    Repetition (* + ? {n}), back-references, and alternation inside a group
    ((a|a)(a|a)... is exponential) can; a top-level alternation of plain sequences
    (ERROR|CRITICAL) cannot. Unsure (a class such as [*]) counts as can.
    """
    depth, escaped, previous = 0, False, ""
    for char in pattern:
        if escaped:
            if char in "123456789":
                return True
            escaped, previous = False, "\\" + char
            continue
        if char == "\\":
            escaped = True
            continue
        if char in "*+{" or (char == "?" and previous != "("):
            return True
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == "|" and depth:
            return True
        previous = char
    return "(?P=" in pattern


class _Helper:
    def __init__(self):
        import subprocess

        if not sys.executable:
            raise CheckError("cannot bound a regular expression: no Python executable to run it in")
        from checks import lifecycle

        argv = [sys.executable, "-I", "-S", "-c", _HELPER]
        lifecycle.internal_command(argv)  # never "a process" of the system under test
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise CheckError("cannot start the regular-expression helper: %s" % (exc.strerror or exc))
        lifecycle.own_group(self.proc.pid)  # gone with us, even after kill -9

    def run(self, job, seconds: float):
        """The job's answer, or None when the helper died or ran out of time."""
        data = marshal.dumps(job + (seconds,))
        out = self.proc.stdout.fileno()
        poller = select.poll()  # not select(): it cannot watch a descriptor above 1023
        poller.register(out, select.POLLIN)
        deadline = time.monotonic() + seconds
        try:
            self.proc.stdin.write(len(data).to_bytes(4, "big") + data)
            self.proc.stdin.flush()
            answer = b""
            while len(answer) < 4 or len(answer) < 4 + int.from_bytes(answer[:4], "big"):
                ready = poller.poll(max(0.0, deadline - time.monotonic()) * 1000)
                chunk = os.read(out, 1 << 20) if ready else b""
                if not chunk:
                    return None
                answer += chunk
        except OSError:  # it died while we wrote
            return None
        return marshal.loads(answer[4:])

    def kill(self) -> None:
        from checks import lifecycle

        try:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
        except OSError:  # already gone, or unflushed input to a dead pipe
            pass
        self.proc.stdout.close()
        lifecycle.release_group(self.proc.pid)


class _Pool:
    """Idle helpers, reused: starting one costs a Python start-up (20-40 ms)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: List[_Helper] = []
        self._busy = set()

    def run(self, job, deadline: float, pattern: str):
        with self._lock:
            helper = self._idle.pop() if self._idle else None
        helper = helper or _Helper()  # its start-up is not charged to the pattern
        seconds = max(deadline - time.monotonic(), _MIN_JOB_S)
        with self._lock:
            self._busy.add(helper)
        answer = None
        try:
            answer = helper.run(job, seconds)
        finally:  # whatever happened, the helper is reused or killed, never lost
            with self._lock:
                kept = helper in self._busy  # else close() has taken it
                self._busy.discard(helper)
                if answer is not None and kept:
                    self._idle.append(helper)
            if answer is None:
                helper.kill()
        if answer is None:
            raise RegexTimeout(_too_slow(pattern, seconds))
        return answer

    def close(self) -> None:
        """Kill every helper: at exit, a busy one must not outlive us until its timer fires."""
        with self._lock:
            helpers, self._idle, self._busy = self._idle + list(self._busy), [], set()
        for helper in helpers:
            helper.kill()


def _too_slow(pattern: str, seconds: float) -> str:
    shown = cut(pattern, 60)
    return ("regular expression %r did not finish within %.2gs (it backtracks too much on this text: "
            "avoid nested repetition such as (a+)+ and overlapping alternatives)" % (shown, seconds))


_POOL = _Pool()
atexit.register(_POOL.close)
