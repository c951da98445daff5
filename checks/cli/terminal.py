"""The terminal: humans' lines on stderr, the report on stdout, one progress line.

Neither a closed, full nor hung-up stream ever stops a run or changes its exit code:
what could not be said is lost, and said on stderr when it is the report.
"""

from __future__ import annotations

import os
import sys

STDOUT_TIMEOUT_S = 60.0  # for a reader of our stdout to take the report


class Progress:
    """One updating line on a terminal ([12/40] PASS api (19 ms)), cleared before the report."""

    def __init__(self, total: int, redact):
        self.total, self.done, self.shown, self.redact = total, 0, 0, redact
        try:
            self.width = (os.get_terminal_size(sys.stderr.fileno()).columns or 80) - 1  # a new pty says 0
        except (OSError, ValueError):
            self.width = 79

    def __call__(self, result) -> None:
        from checks.render import printable

        self.done += 1
        line = "[%d/%d] %-5s %s (%.0f ms)" % (self.done, self.total, result.status.upper(), result.name,
                                            result.duration_ms)
        if result.message and result.status != "pass":
            line += ": " + result.message
        line = printable(self.redact(line))[:max(10, self.width)]
        # Spaces over what is left of a longer line: no escape sequence, so TERM=dumb works too.
        write_stderr("\r" + line + " " * max(0, self.shown - len(line)))
        self.shown = len(line)

    def status(self, text: str) -> None:
        """A line about the check under way (perf: elapsed, requests, rate)."""
        from checks.render import printable

        line = printable(self.redact(text))[:max(10, self.width)]
        write_stderr("\r" + line + " " * max(0, self.shown - len(line)))
        self.shown = len(line)

    def clear(self) -> None:
        if self.shown:
            write_stderr("\r" + " " * self.shown + "\r")


def is_terminal(stream) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError, OSError):
        return False


def write_stderr(text: str) -> None:
    """A closed, full or hung-up stderr never stops a run; what could not be said is lost."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def say(line: str) -> None:
    """Lines for humans on stderr, control characters escaped (messages quote outside bytes)."""
    from checks.render import printable
    write_stderr("\n".join(printable(part) for part in line.split("\n")) + "\n")


def emit(text: str, closed: bool = False, stop=lambda: False) -> None:
    """The report on stdout as UTF-8 whatever the locale; a closed pipe ends quietly.

    A stdout that cannot take it (closed, a full disk, a reader gone quiet for a minute)
    is said on stderr; the exit code is the verdict's either way.
    """
    if closed:
        say("smoke.py: stdout is closed: the report was not printed")
        return
    data = text.encode("utf-8", "replace")  # a lone surrogate from the environment must not lose the report
    try:
        sys.stdout.flush()
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, ValueError, OSError):  # not a real file (a test's capture)
            fd = None
        if fd is None and hasattr(sys.stdout, "buffer"):
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        elif fd is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            from checks import fsio
            fsio.write_all(fd, data, STDOUT_TIMEOUT_S, stop)
    except BrokenPipeError:
        # The reader went away (smoke.py all | head): end quietly, as CPython's docs advise.
        park_stdout()
    except (OSError, ValueError) as exc:
        park_stdout()
        from checks import fsio
        say("smoke.py: cannot print the report on stdout: %s" % fsio.why(exc))


def park_stdout() -> None:
    """Point fd 1 at /dev/null, so the interpreter's last flush of stdout cannot fail."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
