"""log: how often a pattern occurs in the last N lines of a file.

Facts: count (matching lines), lines_read, last_match. Give the expectation:
`count == 0` for "no CRITICAL in the last 500 lines", `count > 0` for "it started".
When the last N lines are more than the read limit holds (one line of 20 MiB), the
check is an `error`: a pattern that could not be looked for was not "absent".
"""

from __future__ import annotations

import os
import re
import stat
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List

from checks import CheckError, ConfigError, regex
from checks.model import cut

NAME = "log"
DEFAULT_EXPECT = None  # "present" and "absent" are equally common: the config says which
FACTS = ("count", "lines_read", "last_match")  # all it can give: a condition on another is a typo, exit 2 at load
MAX_TAIL_BYTES = 16 * 1024 * 1024
MAX_LINES = 1000000
_BLOCK = 65536


def load(fields) -> Dict[str, Any]:
    pattern = fields.text("pattern")
    problem = regex.pattern_problem(pattern)
    if problem:
        raise ConfigError("%s: bad regular expression: %s" % (fields.at("pattern"), problem))
    return {"path": fields.path("path"), "pattern": pattern,
            "lines": fields.integer("lines", 500, 1, MAX_LINES),
            "ignore_case": fields.flag("ignore_case", False)}


def target(params) -> str:
    return "/%s/ in the last %d lines of %s" % (params["pattern"], params["lines"], params["path"])


def probe(params, timeout: float, ctx) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    lines = tail(params["path"], params["lines"])
    found = regex.search_each(params["pattern"], lines, deadline, re.IGNORECASE if params["ignore_case"] else 0)
    matches = [line for line, hit in zip(lines, found) if hit]
    facts: Dict[str, Any] = {"count": len(matches), "lines_read": len(lines)}
    if matches:
        facts["last_match"] = cut(matches[-1], 500)
    return facts


def shown_path(path: str) -> str:
    """A path as the config gave it, and where a relative one was looked for."""
    return path if os.path.isabs(path) else "%s (in %s)" % (path, os.getcwd())


def tail(path: str, count: int) -> List[str]:
    """The last `count` lines, reading backwards in blocks (at most MAX_TAIL_BYTES)."""
    try:
        # Non-blocking open: a FIFO must not wait for a writer; regular files ignore the flag.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise CheckError("cannot read %s: not a regular file" % shown_path(path))
            end = fh.seek(0, os.SEEK_END)
            # Blocks are kept in a list and counted once each: re-joining and re-counting
            # a growing buffer is quadratic, seconds for a 16 MB tail of long lines.
            blocks, newlines, pos = [], 0, end
            while pos > 0 and newlines <= count and end - pos < MAX_TAIL_BYTES:
                step = min(_BLOCK, pos)
                pos -= step
                fh.seek(pos)
                blocks.append(fh.read(step))
                newlines += blocks[-1].count(b"\n")
    except OSError as exc:
        raise CheckError("cannot read %s: %s" % (shown_path(path), exc.strerror))
    lines = b"".join(reversed(blocks)).decode("utf-8", errors="replace").splitlines()
    if pos > 0 and lines:
        lines = lines[1:]  # the first may be a partial line
        if len(lines) < count:  # stopped by the cap, inside one of the lines asked for
            raise CheckError("cannot check the last %d lines of %s: they hold more than the %d MiB read limit "
                             "(a single line may be that long)" % (count, path, MAX_TAIL_BYTES >> 20))
    return lines[-count:]
