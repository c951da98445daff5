"""file: does a file exist, with what mode, size and age; and its JSON (feature flags).

Facts: exists, is_dir, mode ("0644"), size_bytes, age_s (since last modified),
and json when the file is JSON (json = true, or a .json name); json_error says why not.
"""

from __future__ import annotations

import json
import os
import stat
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict

from checks import CheckError, fsio
from checks.kinds.log import shown_path

NAME = "file"
DEFAULT_EXPECT = ("exists == true",)
# all it can give: a condition on another fact is a typo, exit 2 at load
FACTS = ("exists", "is_dir", "mode", "size_bytes", "age_s", "json", "json_error")
MAX_JSON = 1024 * 1024
MAX_JSON_LIMIT = 256 * MAX_JSON


def load(fields) -> Dict[str, Any]:
    path = fields.path("path")
    return {"path": path, "json": fields.flag("json", path.endswith(".json")),
            "max_bytes": fields.integer("max_bytes", MAX_JSON, 1, MAX_JSON_LIMIT)}


def target(params) -> str:
    return params["path"]


def probe(params, timeout: float, ctx) -> Dict[str, Any]:
    path = params["path"]
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # a/b where a is a file: b does not exist
        return {"exists": False}
    except OSError as exc:
        raise CheckError("cannot stat %s: %s" % (shown_path(path), exc.strerror))
    facts: Dict[str, Any] = {
        "exists": True, "is_dir": stat.S_ISDIR(info.st_mode),
        "mode": "%04o" % stat.S_IMODE(info.st_mode), "size_bytes": info.st_size,
        "age_s": round(time.time() - info.st_mtime, 1),
    }
    if params["json"] and stat.S_ISREG(info.st_mode):
        facts.update(read_json(path, params["max_bytes"]))
    elif params["json"] and not facts["is_dir"]:  # opening a FIFO would wait for a writer forever
        facts["json_error"] = "%s is not a regular file" % path
    return facts


def read_json(path: str, max_bytes: int) -> Dict[str, Any]:
    """{"json": ...} or {"json_error": ...}; an unreadable file is a CheckError."""
    try:
        data = fsio.read_head(path, max_bytes + 1)
    except OSError as exc:
        raise CheckError("cannot read %s: %s" % (shown_path(path), fsio.why(exc)))
    if len(data) > max_bytes:
        return {"json_error": "%s is over max_bytes (%d bytes)" % (path, max_bytes)}
    try:
        return {"json": json.loads(data.decode("utf-8-sig"))}
    except (ValueError, UnicodeDecodeError) as exc:
        return {"json_error": "%s is not valid JSON: %s" % (path, exc)}
    except RecursionError:
        return {"json_error": "%s is not valid JSON: nested too deeply to parse" % path}
