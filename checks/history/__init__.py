"""The run history check by check: what each check did in the runs kept (pure functions over
state.history()'s records, oldest first). The `history` command is history/command.py; the
page draws these rows (page.py imports this, never the command).

A record names its checks in lists: "failing" (fail or error) and "passing" (pass or warn), and
in newer records also "erroring", "warning" (subsets of those), "flaky" (passed on a retry) and
"interrupted" (the signal). Every version of the record is read: a field it lacks is taken as
the older record meant it (failing is fail, passing is pass). A run a signal stopped is passed
over: what it says about a check is not a verdict.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, Iterable, List, Optional, Union

SIGNAL_EXITS = (129, 130, 143)  # exit codes of a run ended by SIGHUP, SIGINT, SIGTERM (older records say no more)
FAILING = ("fail", "error")
RECENT = 20  # statuses of a check's newest runs in a row of summarise()
_RANK = {"error": 0, "fail": 1, "warn": 2, "pass": 3}


def _names(run: Dict[str, Any], key: str) -> List[str]:
    value = run.get(key)
    return [name for name in value if isinstance(name, str)] if isinstance(value, list) else []


def statuses(run: Dict[str, Any]) -> Dict[str, str]:
    """{check name: pass | warn | fail | error} of one history record. A name in both lists (two
    sections with a check of the same name) is the worse."""
    warning, erroring = set(_names(run, "warning")), set(_names(run, "erroring"))
    found = {name: "warn" if name in warning else "pass" for name in _names(run, "passing")}
    found.update((name, "error" if name in erroring else "fail") for name in _names(run, "failing"))
    return found


def interrupted(run: Dict[str, Any]) -> bool:
    return bool(run.get("interrupted")) or run.get("exit_code") in SIGNAL_EXITS


def chosen(run: Dict[str, Any], tags: Iterable[str] = (), command: Optional[str] = None) -> bool:
    """Whether a run counts: not interrupted, of the command (when one is given), and chosen by
    one of the tags (when given: its record's selection says --tag TAG)."""
    if interrupted(run) or (command and run.get("command") != command):
        return False
    if not tags:
        return True
    selection = run.get("selection")
    picked = selection.get("tag") if isinstance(selection, dict) else None
    return isinstance(picked, list) and any(tag in picked for tag in tags)


def summarise(runs: List[Dict[str, Any]], check: Union[str, Iterable[str], None] = None, tags: Iterable[str] = (),
              command: Optional[str] = None, recent: int = RECENT) -> List[Dict[str, Any]]:
    """A row per check, the failing first: its last status, since when (the time of the first run
    of its current streak, failing or passing), the streak's length, its pass rate over the runs
    that ran it, how often it passed only on a retry (flaky), how many runs ran it, when it last
    ran, and its newest `recent` statuses and their times (newest last). check narrows to those names."""
    wanted = {check} if isinstance(check, str) else set(check) if check is not None else None
    seen: Dict[str, List[Any]] = {}  # name -> [statuses, times, flaky count]
    for run in runs:
        if not chosen(run, tags, command):
            continue
        when = run.get("time") if isinstance(run.get("time"), str) else ""
        flaky = set(_names(run, "flaky"))
        for name, status in statuses(run).items():
            if wanted is not None and name not in wanted:
                continue
            entry = seen.setdefault(name, [[], [], 0])
            entry[0].append(status)
            entry[1].append(when)
            entry[2] += name in flaky
    rows = [_row(name, *entry, recent=recent) for name, entry in seen.items()]
    return sorted(rows, key=lambda row: (_RANK[row["last"]], row["name"]))


def _row(name: str, found: List[str], times: List[str], flaky: int, recent: int) -> Dict[str, Any]:
    failing = found[-1] in FAILING
    streak = 0
    for status in reversed(found):
        if (status in FAILING) != failing:
            break
        streak += 1
    passed = sum(status not in FAILING for status in found)
    return {"name": name, "last": found[-1], "since": times[-streak], "streak": streak,
            "pass_rate": round(passed / len(found), 4), "flaky": flaky, "runs": len(found), "last_time": times[-1],
            "recent": found[-recent:] if recent > 0 else [], "recent_times": times[-recent:] if recent > 0 else []}
