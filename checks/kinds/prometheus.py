"""prometheus: an instant query against a Prometheus HTTP API (/api/v1/query).

Facts: count (series or 1 for a scalar), value (first sample, a number), values,
series [{"metric": {...}, "value": n}], and no_data (why, when the result is empty).
An empty result is judged by the expectations by default (on_no_data = "expect"):
a "nothing is down" check (up == 0, count == 0) passes on it, count > 0 fails.
on_no_data = "fail", "error" or "pass" decides it whatever the expectations say (the
check's on_no_data, judged where expectations are: runner.judge).
"""

from __future__ import annotations

import json
import math

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, Optional
from urllib.parse import quote_plus

from checks import CheckError, ConfigError
from checks.probes import http
from checks.model import cut

NAME = "prometheus"
DEFAULT_EXPECT = ("count > 0",)
# all it can give: a condition on another fact is a typo, exit 2 at load
FACTS = ("count", "value", "values", "series", "no_data", "latency_ms")


def load(fields) -> Dict[str, Any]:
    url = http.ascii_url(fields.text("url")).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError("%s: expected the Prometheus base URL, e.g. http://127.0.0.1:9090" % fields.at("url"))
    http.check_url(url, fields.at("url"))
    if "/api/v1" in url:
        raise ConfigError("%s: give the Prometheus base URL (%s), not an API path"
                          % (fields.at("url"), url.split("/api/v1", 1)[0]))
    return {"url": url, "query": fields.text("query"), "headers": http.request_headers(fields),
            "insecure": fields.flag("insecure", False), "ca_file": fields.path("ca_file", None)}


def target(params) -> str:
    return "%s %s" % (params["url"], params["query"])


def probe(params, timeout: float, ctx) -> Dict[str, Any]:
    url = "%s/api/v1/query?query=%s" % (params["url"], quote_plus(params["query"], errors="surrogateescape"))
    answer = http.fetch(http.Request(url, headers=params["headers"], insecure=params["insecure"],
                                     ca_file=params["ca_file"]), timeout)
    if "error" in answer:
        return {"error": "prometheus: %s" % answer["error"]}
    doc = answer.get("json")
    if isinstance(doc, dict) and doc.get("errorType") == "bad_data":  # our query, not their health
        raise CheckError("prometheus rejected the query: %s" % _detail(doc, answer))
    if not isinstance(doc, dict) or doc.get("status") != "success":
        hint = " (is url the Prometheus base URL?)" if answer.get("status") == 404 else ""
        return {"error": "prometheus answered %s: %s%s" % (answer.get("status"), _detail(doc, answer), hint)}
    facts = _facts(doc.get("data") or {})
    if facts is None:  # the server's answer, not our query: a fail
        return {"error": "prometheus answered something that is not a query result: %s"
                % cut(json.dumps(doc.get("data")), 200)}
    facts["latency_ms"] = answer["latency_ms"]
    if facts["count"] == 0:  # judged by the check's on_no_data (runner.judge), not here
        facts["no_data"] = "no data: %s returned an empty result" % params["query"]
    return facts


def _detail(doc: Any, answer: Dict[str, Any]) -> str:
    """Prometheus' error; else (a wrong URL, not the API) the start of the body. One line either way."""
    detail = doc.get("error") if isinstance(doc, dict) else None
    return cut(" ".join(str(detail or answer.get("body", "")).split()), 200) or "not a query result"


def _facts(data: Any) -> Optional[Dict[str, Any]]:
    """The facts of a query result; None when the answer is not shaped like one."""
    if not isinstance(data, dict):
        return None
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("scalar", "string"):
        if result and not (isinstance(result, list) and len(result) == 2):
            return None
        samples = [{"metric": {}, "value": result[1]}] if result else []
    elif isinstance(result, (list, type(None))):  # vector; a matrix keeps each series' last sample
        samples = []
        for series in result or []:
            if not isinstance(series, dict):
                return None
            points = series.get("values")
            point = series.get("value") or (points[-1] if isinstance(points, list) and points else None)
            if not (isinstance(point, list) and len(point) == 2):
                return None
            metric = series.get("metric")
            samples.append({"metric": metric if isinstance(metric, dict) else {}, "value": point[1]})
    else:
        return None
    for sample in samples:
        sample["value"] = _number(sample["value"])
    values = [s["value"] for s in samples]
    facts: Dict[str, Any] = {"count": len(samples), "values": values, "series": samples}
    if values:
        facts["value"] = values[0]
    return facts


def _number(text: Any) -> Any:
    """Prometheus sends samples as strings ("0.5", "NaN", "+Inf"); NaN and Inf stay strings (JSON has neither)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    if not math.isfinite(value):
        return text
    return int(value) if value.is_integer() else value
