"""Notifications: say what changed since the last run, where people look.

Three sinks, all driven by the run history (checks/state.py), none deciding a verdict;
each returns its problems as lines, for the report's `problems`:
    --notify URL          a Slack-compatible webhook: {"text", "attachments": [{"fields"}]}
                          when the verdict changes (pass -> fail, fail -> pass: recovered) and
                          when a check has failed escalate_after runs in a row (once a streak);
                          --notify-format json posts the report's summary instead
    --notify-github O/R   one issue per failing check (label smoke-failure), a comment each
                          run it stays broken, closed with a comment when it recovers
    --ping URL            healthchecks.io: URL/start first, then URL or URL/fail
"""

from __future__ import annotations

import json
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

TIMEOUT_S = 5.0
RETRIES = 2  # after the first try: a webhook that blinks does not lose the message
RETRY_DELAY_S = 1.0
LABEL = "smoke-failure"
GITHUB_API = "https://api.github.com"
MAX_ISSUES = 100  # open smoke-failure issues read per run: one page


def events(report: Dict[str, Any], prior: List[Dict[str, Any]], escalate_after: int) -> List[Tuple[str, str]]:
    """[(kind, text)]: "failed" or "recovered" when the verdict changed since the last run of
    this command, and "escalated" for each check whose streak of failures just reached
    escalate_after. The first run of a command that fails counts as a change."""
    from checks import state

    command, selection = report.get("command"), report.get("selection")
    this_selection = [r for r in prior if r.get("command") == command and r.get("selection") == selection]
    from checks.model import PASSING

    before = this_selection[-1].get("status") if this_selection else "pass"
    now = report.get("status")
    failing = [r for r in report.get("results", ()) if r.get("status") in ("fail", "error")]
    found = []
    summary = report.get("summary") or {}
    if now not in PASSING and before in PASSING:
        found.append(("failed", "%d of %d failed: %s" % (len(failing), summary.get("total", 0), ", ".join(
            r["name"] for r in failing[:10]) + (" and %d more" % (len(failing) - 10) if len(failing) > 10 else ""))))
    elif now in PASSING and before not in PASSING:
        found.append(("recovered", "all %d passed again" % summary.get("total", 0)))
    for result in failing:
        streak = 1 + state.consecutive_failures(this_selection, check=result["name"])
        if streak == escalate_after:
            found.append(("escalated", "%s has failed %d runs in a row: %s" % (result["name"], streak,
                                                                              result.get("message", ""))))
    return found


def webhook(url: str, report: Dict[str, Any], found: List[Tuple[str, str]], as_json: bool) -> List[str]:
    """One post per event to a Slack-compatible webhook (or the summary, as_json)."""
    problems = []
    summary = report.get("summary") or {}
    for kind, text in found:
        if as_json:
            payload = {"event": kind, "text": text, "command": report.get("command"), "host": report.get("host"),
                       "status": report.get("status"), "started_at": report.get("started_at"), "summary": summary}
        else:
            title = "smoke.py %s on %s: %s" % (report.get("command"), report.get("host"), kind.upper())
            payload = {"text": "%s - %s" % (title, text), "attachments": [{
                "color": "good" if kind == "recovered" else "danger",
                "fields": [{"title": key, "value": str(summary.get(key)), "short": True}
                           for key in ("total", "pass", "warn", "fail", "error", "skip", "pass_rate")]}]}
        problem = post(url, payload)
        if problem:
            problems.append("--notify: " + problem)
    return problems


def push(url: str, text: str, instance: str, selection: Optional[Dict[str, Any]] = None) -> Optional[str]:
    """The Prometheus text to a Pushgateway, grouped by job, instance and the run's selection
    (a fleet's hosts, and a host's hourly and daily runs, each replace their own group only)."""
    import base64
    from urllib.parse import quote

    from checks import model
    safe = quote(instance, safe="") == instance  # else the Pushgateway's base64 form: a / would split it
    target = "%s/metrics/job/smoke/instance%s/%s" % (url.rstrip("/"), "" if safe else "@base64", instance if safe
                                                     else base64.urlsafe_b64encode(instance.encode()).decode())
    if selection:  # any text: the Pushgateway's base64 form of a grouping value
        target += "/selection@base64/" + base64.urlsafe_b64encode(model.selection_text(selection).encode()).decode()
    answer = request(target, "PUT", {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}, text)
    return None if 200 <= (answer.get("status") or 0) < 300 else "--push %s: %s" % (target, _why(answer))


def ping(url: str, suffix: str, body: str = "") -> Optional[str]:
    """healthchecks.io's convention: URL/start, URL (success), URL/fail."""
    target = url.rstrip("/") + ("/" + suffix if suffix else "")
    problem = post(target, body, content_type="text/plain; charset=utf-8")
    return "--ping %s: %s" % (suffix or "success", problem) if problem else None


def github(repo: str, report: Dict[str, Any], prior: List[Dict[str, Any]], api: str, token: str) -> List[str]:
    """Open, comment on, and close one issue per check, by its title."""
    base = "%s/repos/%s" % (api.rstrip("/"), repo)
    headers = {"Authorization": "Bearer " + token, "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28"}
    answer = request(base + "/issues?state=open&per_page=%d&labels=%s" % (MAX_ISSUES, LABEL), "GET", headers)
    if answer.get("status") != 200 or not isinstance(answer.get("json"), list):
        return ["--notify-github: cannot list the open issues of %s: %s" % (repo, _why(answer))]
    open_issues = {issue["title"]: issue["number"] for issue in answer["json"]  # what is not an issue is passed over
                   if isinstance(issue, dict) and isinstance(issue.get("title"), str)
                   and "pull_request" not in issue  # GitHub lists pull requests as issues too
                   and type(issue.get("number")) is int and issue["number"] > 0}
    problems, host, command = [], report.get("host"), report.get("command")
    for result in report.get("results", ()):
        title = "smoke: %s fails on %s (%s)" % (result.get("name"), host, command)
        number = open_issues.get(title)
        body = "%s at %s: %s\n\n%s" % (result.get("status", "").upper(), report.get("started_at"),
                                       result.get("message", ""), _evidence(result))
        if result.get("status") in ("fail", "error"):
            if number is None:
                answer = request(base + "/issues", "POST", headers, {"title": title, "body": body, "labels": [LABEL]})
                ok = answer.get("status") == 201
            else:
                answer = request(base + "/issues/%d/comments" % number, "POST", headers,
                                 {"body": "Still failing. " + body})
                ok = answer.get("status") == 201
        elif result.get("status") == "pass" and number is not None:
            answer = request(base + "/issues/%d/comments" % number, "POST", headers,
                             {"body": "Recovered at %s: %s passes again." % (report.get("started_at"),
                                                                             result.get("name"))})
            ok = answer.get("status") == 201
            if ok:
                answer = request(base + "/issues/%d" % number, "PATCH", headers, {"state": "closed"})
                ok = answer.get("status") == 200
        else:
            continue
        if not ok:
            problems.append("--notify-github: %s: %s" % (title, _why(answer)))
    return problems


def _evidence(result: Dict[str, Any]) -> str:
    facts = json.dumps(result.get("facts") or {}, indent=2, sort_keys=True)
    return "```\n%s\n```" % (facts[:4000] + ("\n..." if len(facts) > 4000 else ""))


def _why(answer: Dict[str, Any]) -> str:
    return answer.get("error") or "status %s" % answer.get("status")


def post(url: str, payload: Any, content_type: str = "application/json") -> Optional[str]:
    """POST within TIMEOUT_S, retried RETRIES times; the problem in one line, or None."""
    answer = request(url, "POST", {"Content-Type": content_type}, payload)
    return None if 200 <= (answer.get("status") or 0) < 300 else "%s: %s" % (url, _why(answer))


def request(url: str, method: str, headers: Dict[str, str], payload: Any = None) -> Dict[str, Any]:
    """The answer's facts (status, json, error), retried on a connection error or a 5xx."""
    from checks.probes import http

    body = payload if isinstance(payload, (str, type(None))) else json.dumps(payload)
    headers = dict(headers, **({"Content-Type": "application/json"} if body is not None and
                               "Content-Type" not in headers else {}))
    answer: Dict[str, Any] = {}
    for attempt in range(RETRIES + 1):
        if attempt:
            time.sleep(RETRY_DELAY_S)
        answer = http.fetch(http.Request(url, method, headers, body, follow_redirects=False), TIMEOUT_S)
        if answer.get("status") and answer["status"] < 500:
            break
    return answer


