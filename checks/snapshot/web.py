"""What the listeners answer: HTTP or HTTPS, at which health paths, what (and whether a
Prometheus is behind one). GET only, to the host's own listening addresses, each request
bounded by its own timeout and by the run's deadline, and its body capped; all of them in a
small pool of threads. Also here: which fields of a JSON answer look stable enough to expect.
"""

from __future__ import annotations

import functools
import json
import re
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

from checks import CheckError, __version__
from checks.probes import http

# A path no service has: one that answers it 2xx answers every path (a catch-all, a single-page app).
CANARY = "/smoke.py-snapshot/no-such-page"
WORKERS = 16
UNASKED = "not probed: --timeout ran out"  # why a listener has no answer, when the run's deadline came first
_HEADERS = {"User-Agent": "smoke.py/%s (snapshot)" % __version__}
# Words of a JSON key whose value changes by itself: times, counters, ids, versions, sizes, places.
_UNSTABLE = frozenset("time timestamp date ts at since until uptime started start updated created modified last next "
                      "expires expiry id ids uuid guid pid version build commit sha hash revision rev count total "
                      "seconds secs sec ms millis nanos duration latency elapsed age epoch now seq sequence nonce "
                      "random requests connections memory bytes size load host hostname node instance pod ip "
                      "address port generation took checked".split())
# Words of a key whose small whole number is a state, not a measure ({"status": 1}).
_ENUM = frozenset("status state code health healthy ok up ready alive live available".split())
MAX_FIELDS = 8
MAX_DEPTH = 3


def probe(targets: List[Tuple[str, int]], paths: List[str], per_probe: float, deadline: float,
          workers: int = WORKERS) -> Dict[Tuple[str, int], Dict[str, Any]]:
    """{(address, port): what it answered}: scheme (http, https, or None with why), refused (its
    connections were: nothing listens there any more), endpoints [(path, facts)] that answered
    2xx, catch_all, insecure (why the certificate does not verify, for https) and prometheus
    ({count, down} of its `up`)."""
    from concurrent.futures import ThreadPoolExecutor

    from http import client  # noqa: F401 -- imported now, not by 16 threads at once
    try:
        import ssl  # noqa: F401
        schemes = ("http", "https")
    except ImportError:  # a Python without ssl: HTTP only
        schemes = ("http",)
    fetch = functools.partial(_fetch, per_probe=per_probe, deadline=deadline)
    with ThreadPoolExecutor(workers) as pool:
        def each(urls, verify=()):
            futures = [pool.submit(fetch, link, i not in verify) for i, link in enumerate(urls)]
            try:
                return [future.result() for future in futures]
            except BaseException:  # ^C: what has not started never will; what has ends within its timeout
                for future in futures:
                    future.cancel()
                raise

        found = {}
        first = each([url(scheme, address, port, paths[0]) for address, port in targets for scheme in schemes])
        for i, target in enumerate(targets):
            plain, tls = first[i * len(schemes)], first[i * len(schemes) + 1] if len(schemes) > 1 else None
            scheme = "https" if tls and "status" in tls else "http" if plain and "status" in plain else None
            refused = all((answer or {}).get("error") == "connection refused"
                          for answer in first[i * len(schemes):(i + 1) * len(schemes)])
            found[target] = {"scheme": scheme, "refused": refused, "first": tls if scheme == "https" else plain,
                             "endpoints": [], "why": None if scheme else _why_not(plain, per_probe), "catch_all": False,
                             "insecure": None, "prometheus": None, "over_cap": []}
        speaking = [target for target in targets if found[target]["scheme"]]
        rest = list(paths[1:]) + [CANARY]
        answers = each([url(found[t]["scheme"], t[0], t[1], path) for t in speaking for path in rest])
        for i, target in enumerate(speaking):
            entry = found[target]
            answered = [(paths[0], entry.pop("first"))] + list(zip(rest, answers[i * len(rest):(i + 1) * len(rest)]))
            _judge(entry, answered[:-1], answered[-1][1])
        secure = [t for t in speaking if found[t]["scheme"] == "https" and found[t]["endpoints"]]
        prometheus = [t for t in speaking if any(path == "/-/healthy" for path, _ in found[t]["endpoints"])]
        later = each([url("https", t[0], t[1], found[t]["endpoints"][0][0]) for t in secure] +  # verified
                     [url(found[t]["scheme"], t[0], t[1], "/api/v1/query?query=up") for t in prometheus],
                     verify=range(len(secure)))
        for target, facts in zip(secure, later):
            found[target]["insecure"] = None if facts and "status" in facts else _tls_problem(facts)
        for target, facts in zip(prometheus, later[len(secure):]):
            found[target]["prometheus"] = _up(facts)
    for entry in found.values():
        entry.pop("first", None)
    return found


def _fetch(link: str, insecure: bool, per_probe: float, deadline: float) -> Optional[Dict[str, Any]]:
    """One GET, never followed elsewhere; None when the run's deadline leaves no time for it."""
    left = deadline - time.monotonic()
    if left < 0.05:
        return None
    request = http.Request(link, headers=_HEADERS, follow_redirects=False, insecure=insecure, max_body=http.MAX_BODY)
    try:
        return http.fetch(request, min(per_probe, left))
    except CheckError as exc:  # this host's limit (descriptors), or its CA store: said, never a service's answer
        return {"error": str(exc)}


def url(scheme: str, address: str, port: int, path: str) -> str:
    return "%s://%s:%d%s" % (scheme, "[%s]" % address if ":" in address else address, port, path)


def _why_not(facts: Optional[Dict[str, Any]], per_probe: float) -> str:
    if facts is None:
        return UNASKED
    error = str(facts.get("error") or "")
    return "no answer within %gs" % per_probe if error.startswith("timed out") else "not HTTP (%s)" % error


def _judge(entry: Dict[str, Any], answered: List[Tuple[str, Any]], canary: Optional[Dict[str, Any]]) -> None:
    """The endpoints of a port: what answered 2xx whole; on a catch-all (the canary answers 2xx
    too) only what answers otherwise than the canary, else the first path, said to be one."""
    kept = []
    for path, facts in answered:
        if not facts or not 200 <= (facts.get("status") or 0) < 300:
            continue
        if "error" in facts:  # over the cap an http check reads, or cut short: a check would not pass
            entry["over_cap"].append(path)
            continue
        kept.append((path, facts))
    if canary and 200 <= (canary.get("status") or 0) < 300 and kept:
        different = [(path, facts) for path, facts in kept
                     if (facts["status"], facts.get("body")) != (canary["status"], canary.get("body"))]
        entry["catch_all"] = not different
        kept = different or kept[:1]
    entry["endpoints"] = kept


def _tls_problem(facts: Optional[Dict[str, Any]]) -> str:
    """Why a certificate does not verify here, in a few words."""
    if facts is None:
        return "not verified: --timeout ran out"
    error = str(facts.get("error") or "")
    for noise in ("TLS: ", "certificate verify failed: "):
        error = error[len(noise):] if error.startswith(noise) else error
    return error.split(" (a private CA", 1)[0]


def _up(facts: Optional[Dict[str, Any]]) -> Optional[Dict[str, int]]:
    """{count, down} of a Prometheus's `up` series; None when this is no Prometheus query API."""
    doc = (facts or {}).get("json")
    if not isinstance(doc, dict) or doc.get("status") != "success" or not isinstance(doc.get("data"), dict):
        return None
    series = doc["data"].get("result")
    if not isinstance(series, list):
        return None
    values = [s.get("value")[1] for s in series if isinstance(s, dict) and isinstance(s.get("value"), list)
              and len(s["value"]) == 2]
    return {"count": len(values), "down": sum(1 for value in values if value in ("0", 0))}


def expectations(facts: Dict[str, Any]) -> List[str]:
    """What an http check expects of an answer like this one: its status, and for JSON the
    fields that look stable."""
    found = ["status == %d" % facts["status"]]
    doc = facts.get("json")
    if isinstance(doc, dict):
        found += ["%s == %s" % (subject, _literal(value)) for subject, value in stable_fields(doc)]
    return found


def stable_fields(doc: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """(subject, value) of the fields of a JSON object, nested up to MAX_DEPTH, that look like
    states: true/false, a word ("ok", "UP"), a small whole number under a state's name. Never a
    time, counter, id, version, size or other number, nor a secret-named field; keys in order."""
    from checks.secrets import secret_field

    found: List[Tuple[str, Any]] = []
    stack = [("json", doc, 1)]
    while stack and len(found) < MAX_FIELDS:
        subject, obj, depth = stack.pop(0)
        for key in sorted(obj, key=str):
            words = [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", str(key))]
            if not words or _UNSTABLE.intersection(words) or secret_field(str(key)):
                continue
            value, here = obj[key], subject + _step(str(key))
            if isinstance(value, dict) and depth < MAX_DEPTH:
                stack.append((here, value, depth + 1))
            elif isinstance(value, bool) or (isinstance(value, str) and _word(value)):
                found.append((here, value))
            elif type(value) is int and words[-1] in _ENUM and -1 <= value <= 9:
                found.append((here, value))
    return found[:MAX_FIELDS]


def _word(text: str) -> bool:
    """A state's word: letters (a space, - or _ between), short; not hex that happens to be letters."""
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z _-]{0,31}", text)) and not re.fullmatch(r"[A-Fa-f]{8,}", text)


def _step(key: str) -> str:
    return "." + key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key) else "[%s]" % json.dumps(key)


def _literal(value: Any) -> str:
    """A value as a condition reads it back: a plain word bare, anything else as JSON."""
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z][A-Za-z_-]*", value) and value not in (
            "true", "false", "null", "NaN", "Infinity"):
        return value
    return json.dumps(value)
