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

TIMEOUT_S = 5.0  # per request, within the delivery budget
RETRIES = 2  # after the first try: a webhook that blinks does not lose the message
RETRY_DELAY_S = 1.0
LABEL = "smoke-failure"
GITHUB_API = "https://api.github.com"
PER_PAGE = 100  # open smoke-failure issues read per request
MAX_PAGES = 20  # pages followed (Link: rel="next"): 2,000 open issues
SAID = 5  # failing checks named in a message, each with why
WHY_CHARS = 160
_MARK = "<!-- smoke.py issue: %s -->"  # in an issue's body: which check, command, selection and instance it is


class Budget:
    """What delivery may take, shared by every notification of a run: until `ends` (monotonic),
    and nothing more once stop() says so (a signal came)."""

    def __init__(self, ends: float, stop=lambda: False):
        self.ends, self.stop = ends, stop

    def left(self) -> float:
        return self.ends - time.monotonic()

    def spent(self) -> Optional[str]:
        """Why nothing more may be sent, or None."""
        if self.stop():
            return "not sent: interrupted"
        if self.left() <= 0.05:
            return "not sent: the delivery budget ran out"
        return None


UNBOUNDED = Budget(float("inf"))


def events(report: Dict[str, Any], prior: List[Dict[str, Any]], escalate_after: int) -> List[Tuple[str, str]]:
    """[(kind, text)]: "failed" or "recovered" when the verdict changed since the last run of
    this command, and "escalated" for each check whose streak of failures just reached
    escalate_after. The first run of a command that fails counts as a change; a run that a
    signal stopped tells nothing and is passed over; one whose message was not delivered
    is told again by the next."""
    from checks import state
    from checks.history import interrupted

    if report.get("interrupted"):  # a run stopped (systemctl stop, a cancelled job) gave no verdict to tell
        return []
    command, selection = report.get("command"), report.get("selection")
    this_selection = [r for r in prior if r.get("command") == command and r.get("selection") == selection
                      and not interrupted(r)]
    from checks.model import PASSING

    told = [r for r in this_selection if not r.get("untold")]  # a message not delivered is told again
    before = told[-1].get("status") if told else "pass"
    now = report.get("status")
    failing = [r for r in report.get("results", ()) if r.get("status") in ("fail", "error")]
    found = []
    summary = report.get("summary") or {}
    if now not in PASSING and before in PASSING:
        found.append(("failed", "%d of %d failed: %s" % (len(failing), summary.get("total", 0), "; ".join(
            _failure(r) for r in failing[:SAID]) + (" and %d more" % (len(failing) - SAID) if len(failing) > SAID
                                                   else ""))))
    elif now in PASSING and before not in PASSING:
        found.append(("recovered", "all %d passed again" % summary.get("total", 0)))
    for result in failing:
        before_this = state.failing_streak(this_selection, result["name"])
        streak = 1 + len(before_this)
        if streak == escalate_after or streak > escalate_after and all(
                run.get("untold") for run in before_this[escalate_after - 1:]):
            found.append(("escalated", "%s has failed %d runs in a row: %s" % (result["name"], streak,
                                                                              result.get("message", ""))))
    return found


def _failure(result: Dict[str, Any]) -> str:
    """A failing check and why, in a line short enough for a chat message."""
    message = " ".join(str(result.get("message") or result.get("status") or "").split())
    return "%s (%s)" % (result.get("name"), message if len(message) <= WHY_CHARS else message[:WHY_CHARS] + "...")


def run_url(environ: Dict[str, str]) -> Optional[str]:
    """This run's page in the CI that runs it, from the CI's own variables (GitHub Actions,
    GitLab, Jenkins, CircleCI, Buildkite, Azure Pipelines, Travis, Drone), or None."""
    if environ.get("GITHUB_RUN_ID") and environ.get("GITHUB_REPOSITORY"):
        return "%s/%s/actions/runs/%s" % (environ.get("GITHUB_SERVER_URL") or "https://github.com",
                                          environ["GITHUB_REPOSITORY"], environ["GITHUB_RUN_ID"])
    if environ.get("SYSTEM_COLLECTIONURI") and environ.get("BUILD_BUILDID"):
        return "%s%s/_build/results?buildId=%s" % (environ["SYSTEM_COLLECTIONURI"],
                                                   environ.get("SYSTEM_TEAMPROJECT", ""), environ["BUILD_BUILDID"])
    for name in ("CI_JOB_URL", "BUILD_URL", "CIRCLE_BUILD_URL", "BUILDKITE_BUILD_URL", "TRAVIS_BUILD_WEB_URL",
                 "DRONE_BUILD_LINK"):
        if environ.get(name):
            return environ[name]
    return None


def webhook(url: str, report: Dict[str, Any], found: List[Tuple[str, str]], as_json: bool,
            budget: Budget = UNBOUNDED, link: Optional[str] = None) -> List[str]:
    """One post per event to a Slack-compatible webhook (or the summary, as_json); link: the run's page."""
    problems = []
    summary = report.get("summary") or {}
    for kind, text in found:
        if as_json:
            payload = {"event": kind, "text": text, "command": report.get("command"), "host": report.get("host"),
                       "status": report.get("status"), "started_at": report.get("started_at"), "summary": summary,
                       "run_url": link}
        else:
            title = "smoke.py %s on %s: %s" % (report.get("command"), report.get("host"), kind.upper())
            payload = {"text": "%s - %s%s" % (title, text, " - " + link if link else ""), "attachments": [{
                "color": "good" if kind == "recovered" else "danger",
                "fields": [{"title": key, "value": str(summary.get(key)), "short": True}
                           for key in ("total", "pass", "warn", "fail", "error", "skip", "pass_rate")]}]}
        problem = post(url, payload, budget=budget)
        if problem:
            problems.append("--notify: " + problem)
    return problems


def push(url: str, text: str, instance: str, selection: Optional[Dict[str, Any]] = None,
         budget: Budget = UNBOUNDED) -> Optional[str]:
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
    answer = request(target, "PUT", {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}, text, budget)
    return None if 200 <= (answer.get("status") or 0) < 300 else "--push %s: %s" % (target, _why(answer))


def ping(url: str, suffix: str, body: str = "", budget: Budget = UNBOUNDED) -> Optional[str]:
    """healthchecks.io's convention: URL/start, URL (success), URL/fail."""
    target = url.rstrip("/") + ("/" + suffix if suffix else "")
    problem = post(target, body, content_type="text/plain; charset=utf-8", budget=budget)
    return "--ping %s: %s" % (suffix or "success", problem) if problem else None


def github(repo: str, report: Dict[str, Any], prior: List[Dict[str, Any]], api: str, token: str,
           instance: Optional[str] = None, budget: Budget = UNBOUNDED, link: Optional[str] = None) -> List[str]:
    """Open, comment on, and close one issue per check. An issue is known by the check, the
    command, the run's selection and --instance (a mark in its body), never by the host's name:
    a CI runner gets a new one every run."""
    if report.get("interrupted"):  # a run a signal stopped judged nothing: no issue opened or closed on it
        return []
    base = "%s/repos/%s" % (api.rstrip("/"), repo)
    headers = {"Authorization": "Bearer " + token, "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28"}
    open_issues, problem = _open_issues(base, headers, budget)
    if problem:
        return ["--notify-github: cannot list the open issues of %s: %s" % (repo, problem)]
    problems, untold = [], []
    for result in report.get("results", ()):
        identity, title = _identity(report, result, instance)
        number = open_issues.get(identity) or open_issues.get(_legacy_title(report, result))
        body = "%s at %s: %s\n\n%s%s\n\n%s" % (result.get("status", "").upper(), report.get("started_at"),
                                             result.get("message", ""), "The run: %s\n\n" % link if link else "",
                                             _evidence(result), _MARK % identity)
        if result.get("status") in ("fail", "error"):
            if number is None:
                calls = [(base + "/issues", "POST", {"title": title, "body": body, "labels": [LABEL]}, 201)]
            else:
                calls = [(base + "/issues/%d/comments" % number, "POST", {"body": "Still failing. " + body}, 201)]
        elif result.get("status") == "pass" and number is not None:
            calls = [(base + "/issues/%d/comments" % number, "POST", {"body": "Recovered at %s: %s passes again." % (
                report.get("started_at"), result.get("name"))}, 201),
                     (base + "/issues/%d" % number, "PATCH", {"state": "closed"}, 200)]
        else:
            continue
        if budget.spent():
            untold.append(str(result.get("name")))
            continue
        for url, method, payload, expected in calls:
            answer = request(url, method, headers, payload, budget)
            if answer.get("status") != expected:
                problems.append("--notify-github: %s: %s" % (title, _why(answer)))
                break
    if untold:
        problems.append("--notify-github: %s: %d check%s not told: %s" % (
            budget.spent()[len("not sent: "):], len(untold), "" if len(untold) == 1 else "s", ", ".join(untold[:10])))
    return problems


def _identity(report: Dict[str, Any], result: Dict[str, Any], instance: Optional[str]) -> Tuple[str, str]:
    """(what an issue is about, as its mark holds it; the issue's title)."""
    from checks.model import selection_text

    selection = selection_text(report.get("selection") or {})
    what = {"check": result.get("name"), "command": report.get("command"), "selection": selection,
            "instance": instance or ""}
    title = "smoke: %s fails (%s%s)%s" % (result.get("name"), report.get("command"),
                                          " " + selection if selection else "", " on " + instance if instance else "")
    return json.dumps(what, sort_keys=True).replace(">", "\\u003e"), title  # no "-->" can end its mark


def _legacy_title(report: Dict[str, Any], result: Dict[str, Any]) -> str:
    """The title issues had before they carried a mark: still found, so an upgrade opens no duplicate."""
    return "smoke: %s fails on %s (%s)" % (result.get("name"), report.get("host"), report.get("command"))


def _open_issues(base: str, headers: Dict[str, str], budget: Budget) -> Tuple[Dict[str, int], Optional[str]]:
    """({identity or legacy title: number} of the open smoke-failure issues, across pages
    (Link: rel="next", on the same API only, MAX_PAGES at most), the problem or None."""
    import re

    found: Dict[str, int] = {}
    url: Optional[str] = base + "/issues?state=open&per_page=%d&labels=%s" % (PER_PAGE, LABEL)
    for _ in range(MAX_PAGES):
        answer = request(url, "GET", headers, None, budget)
        if answer.get("status") != 200 or not isinstance(answer.get("json"), list):
            return found, _why(answer)
        for issue in answer["json"]:  # what is not an issue (a pull request, garbage) is passed over
            if not (isinstance(issue, dict) and isinstance(issue.get("title"), str) and "pull_request" not in issue
                    and type(issue.get("number")) is int and issue["number"] > 0):
                continue
            mark = re.search(re.escape(_MARK).replace("%s", "(.*?)"), str(issue.get("body") or ""))
            found.setdefault(mark.group(1) if mark else issue["title"], issue["number"])
        link = (answer.get("headers") or {}).get("link") or ""
        following = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link)
        url = following.group(1) if following else None
        if url is None:
            return found, None
        if not url.startswith(base.split("/repos/", 1)[0] + "/"):  # our token goes to our API only
            return found, "the next page is not on %s: %s" % (base.split("/repos/", 1)[0], url)
    return found, None


def _evidence(result: Dict[str, Any]) -> str:
    facts = json.dumps(result.get("facts") or {}, indent=2, sort_keys=True)
    return "```\n%s\n```" % (facts[:4000] + ("\n..." if len(facts) > 4000 else ""))


def _why(answer: Dict[str, Any]) -> str:
    return answer.get("error") or "status %s" % answer.get("status")


def post(url: str, payload: Any, content_type: str = "application/json", budget: Budget = UNBOUNDED) -> Optional[str]:
    """POST within TIMEOUT_S, retried RETRIES times; the problem in one line, or None."""
    answer = request(url, "POST", {"Content-Type": content_type}, payload, budget)
    return None if 200 <= (answer.get("status") or 0) < 300 else "%s: %s" % (url, _why(answer))


def request(url: str, method: str, headers: Dict[str, str], payload: Any = None,
            budget: Budget = UNBOUNDED) -> Dict[str, Any]:
    """The answer's facts (status, json, error), retried on a connection error or a 5xx, each
    try and wait within what is left of the budget."""
    from checks.probes import http

    body = payload if isinstance(payload, (str, type(None))) else json.dumps(payload)
    headers = dict(headers, **({"Content-Type": "application/json"} if body is not None and
                               "Content-Type" not in headers else {}))
    answer: Dict[str, Any] = {}
    for attempt in range(RETRIES + 1):
        if attempt:
            if budget.left() <= RETRY_DELAY_S + 0.1:
                break
            time.sleep(RETRY_DELAY_S)
        spent = budget.spent()
        if spent:
            return answer if attempt else {"error": spent}
        answer = http.fetch(http.Request(url, method, headers, body, follow_redirects=False),
                            min(TIMEOUT_S, budget.left()))
        if answer.get("status") and answer["status"] < 500:
            break
    return answer


