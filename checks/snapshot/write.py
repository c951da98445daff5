"""A config as text: JSON, or TOML for those who keep their configs so. The standard library
reads TOML (3.11+) but writes none, so this writes the little a config holds: tables, arrays
of tables, strings, numbers, booleans, lists and inline tables. Written here on any Python;
read by smoke.py on 3.11 and newer.
"""

from __future__ import annotations

import json
import math
import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def to_json(doc: Dict[str, Any]) -> str:
    """Indented, with a list of plain values on one line ("tags": ["tcp"]): a person reads and edits it."""
    return _json(doc, "") + "\n"


def _json(value: Any, indent: str) -> str:
    inner = indent + "  "
    if isinstance(value, dict) and value:
        return "{\n%s\n%s}" % (",\n".join("%s%s: %s" % (inner, json.dumps(key, ensure_ascii=False),
                                                         _json(item, inner)) for key, item in value.items()), indent)
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        return "[\n%s\n%s]" % (",\n".join(inner + _json(item, inner) for item in value), indent)
    return json.dumps(value, ensure_ascii=False)


def to_toml(doc: Dict[str, Any]) -> str:
    lines: List[str] = []
    _table(doc, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(table: Dict[str, Any], path: List[str], lines: List[str]) -> None:
    """A table's plain keys, then its tables and arrays of tables, each under its header."""
    for key, value in table.items():
        if not _is_table(value) and not _is_tables(value):
            lines.append("%s = %s" % (_key(key), _value(value)))
    for key, value in table.items():
        if _is_table(value):
            if not value or any(not _is_table(v) and not _is_tables(v) for v in value.values()):
                lines += ["", "[%s]" % ".".join(_key(k) for k in path + [key])]
            _table(value, path + [key], lines)
        elif _is_tables(value):
            for item in value:
                lines += ["", "[[%s]]" % ".".join(_key(k) for k in path + [key])]
                _table(item, path + [key], lines)


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else "inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[%s]" % ", ".join(_value(item) for item in value)
    if isinstance(value, dict):
        return "{%s}" % ", ".join("%s = %s" % (_key(k), _value(v)) for k, v in value.items())
    raise TypeError("TOML has no %s" % type(value).__name__)  # a config never holds one (null: leave it out)


def _string(text: str) -> str:
    """A TOML basic string: backslash, quote and every control character escaped."""
    return '"%s"' % "".join(_ESCAPES.get(char) or ("\\u%04x" % ord(char) if char < " " or char == "\x7f" else char)
                            for char in text)
