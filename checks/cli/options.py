"""The flags every command has, and what the command line's errors need before a run:
a did-you-mean, and whether the Nagios exit policy is asked for.
"""

from __future__ import annotations


def add_arguments(parser, deadline_help=None) -> None:
    """The flags every command has (output, selection, verdict, modes). deadline_help: a
    command whose own deadline --deadline sets (heartbeat's detection deadline) says so."""
    from checks.config import bounded
    from checks.render import RENDERERS
    from checks.runner import DEFAULT_CONCURRENCY, MAX_CONCURRENCY, MAX_DEADLINE_S

    parser.add_argument("--config", metavar="FILE", help="JSON config (TOML on Python 3.11+)")
    out = parser.add_argument_group("output")
    out.add_argument("--format", choices=list(RENDERERS), default="json", help="report format (default json)")
    out.add_argument("--output", metavar="FILE", help="also write the JSON report here (atomically, for a file)")
    out.add_argument("--junit", metavar="FILE", help="also write JUnit XML here (for CI readers)")
    out.add_argument("--prom", metavar="FILE", help="also write the Prometheus text format here (node_exporter's "
                                                    "textfile collector: a FILE.prom in its directory)")
    out.add_argument("--tap", metavar="FILE", help="also write TAP version 13 here")
    out.add_argument("--html", metavar="FILE", help="also write a page here: one self-contained HTML file with the "
                                                    "results, pictures and each check's recent runs")
    out.add_argument("--instance", metavar="NAME", help="the Pushgateway group's instance (default: this host's "
                                                        "name; give a stable one where hosts come and go, as pods)")
    out.add_argument("--push", metavar="URL", help="PUT the Prometheus metrics to this Pushgateway, as "
                                                   "URL/metrics/job/smoke/instance/HOST")
    out.add_argument("--exit-codes", choices=("smoke", "nagios"), default=None,
                     help="smoke (default): 0 pass 1 fail 2 config 3 error; nagios: 0 OK 1 WARNING 2 CRITICAL "
                          "3 UNKNOWN (a config error too); implied by --format nagios")
    out.add_argument("--quiet", action="store_true", help="print nothing when the verdict is pass")
    out.add_argument("--secret", action="append", default=[], metavar="NAME",
                     help="mask the value of environment variable NAME everywhere (repeatable)")
    out.add_argument("--state-dir", metavar="DIR",
                     help="where runs keep their history (history.jsonl) and rollback its lock and incidents "
                          "(default: the config's state_dir, else $XDG_STATE_HOME/smoke.py, else "
                          "~/.local/state/smoke.py)")
    run = parser.add_argument_group("selection and verdict")
    run.add_argument("--tag", action="append", default=[], metavar="TAG",
                     help="run only checks with this tag (repeatable)")
    run.add_argument("--skip-tag", action="append", default=[], metavar="TAG", help="skip checks with this tag")
    run.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this check (repeatable)")
    run.add_argument("--min-pass-rate", type=bounded(0, 1), metavar="RATE",
                     help="pass when at least this share of checks pass and every critical one does "
                          "(default: the config's min_pass_rate, else 1.0)")
    run.add_argument("--concurrency", type=bounded(1, MAX_CONCURRENCY, integer=True), metavar="N",
                     help="checks (for deploy --predict-url: requests) at once (default %d)" % DEFAULT_CONCURRENCY)
    run.add_argument("--deadline", type=bounded(0.001, MAX_DEADLINE_S), metavar="S",
                     help=deadline_help or "bound on the whole run, in seconds")
    run.add_argument("--lock", metavar="FILE", help="hold an flock on FILE while running: a second run exits 3 "
                                                     "naming the holder (one left by kill -9 never blocks)")
    run.add_argument("--jitter", type=bounded(0, 3600), metavar="S",
                     help="wait a random 0 to S seconds first: spreads a fleet's cron runs")
    tell = parser.add_argument_group("notifications (from the run history: on a change, not every run)")
    tell.add_argument("--notify", metavar="URL", help="post to this Slack-compatible webhook when the verdict changes "
                                                    "and when a check has failed --escalate-after runs in a row")
    tell.add_argument("--notify-format", choices=("slack", "json"), default="slack",
                      help="slack (default): {text, attachments}; json: the report's summary")
    tell.add_argument("--escalate-after", type=bounded(1, 1000000, integer=True), metavar="N",
                      help="runs in a row a check fails before it is escalated (default: the config's "
                           "escalate_after, else 3)")
    tell.add_argument("--notify-github", metavar="OWNER/REPO",
                      help="an issue per failing check, commented while it fails and closed when it recovers "
                           "(token: $GITHUB_TOKEN)")
    tell.add_argument("--github-api", metavar="URL", help="GitHub's API (default $GITHUB_API_URL, else "
                                                          "https://api.github.com; GitHub Enterprise: its /api/v3)")
    tell.add_argument("--ping", metavar="URL", help="healthchecks.io style: URL/start first, then URL on pass or "
                                                    "URL/fail")
    tell.add_argument("--run-url", metavar="URL", help="the run's page, linked from every message (default: the "
                                                       "CI's own, e.g. GitHub Actions' run, $CI_JOB_URL, $BUILD_URL)")
    mode = parser.add_argument_group("modes")
    mode.add_argument("--validate", action="store_true", help="check the configuration, run nothing")
    mode.add_argument("--dry-run", action="store_true", help="print what would run, with each check's options")
    mode.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")


def did_you_mean(message: str, options) -> str:
    """A hint for one of argparse's errors: the close option, command or choice meant."""
    import difflib
    import re

    words = re.findall(r"invalid choice: '?([^' ]+)", message)
    choices = re.findall(r"[\w-]+", message.split("choose from", 1)[1]) if words and "choose from" in message else []
    if message.startswith("unrecognized arguments: "):
        words = [w.split("=", 1)[0] for w in message.split()[2:] if w.startswith("-")]
    for word in words:
        close = difflib.get_close_matches(word, choices or options, n=1)
        if close:
            return " (did you mean %s?)" % close[0]
    if "argument COMMAND: invalid choice" in message:  # smoke.py --config x.json: an option before the command
        return " (the command comes first, then its options: smoke.py health --config FILE)"
    return ""


def nagios(args) -> bool:
    """Whether exit codes follow Nagios's convention: --exit-codes nagios, or --format nagios."""
    return args.exit_codes == "nagios" or (args.exit_codes is None and args.format == "nagios")


def nagios_argv(argv) -> bool:
    """The same, from the raw arguments, for errors found before they are parsed."""
    def named(flag):  # argparse takes any unambiguous prefix of a long option
        return lambda word: len(word) >= 4 and flag.startswith(word)
    pairs = list(zip(argv, argv[1:])) + [tuple(a.split("=", 1)) for a in argv if "=" in a]
    exit_codes = [value for key, value in pairs if named("--exit-codes")(key)]
    return exit_codes[-1:] == ["nagios"] or (not exit_codes and any(
        named("--format")(key) and value == "nagios" for key, value in pairs))
