#!/usr/bin/env python3
"""smoke.py: smoke tests after every deploy, from cron, CI or an incident shell.

    python3 smoke.py health --url http://127.0.0.1:8080/health --expect 'json.status == healthy'
    python3 smoke.py all --config smoke.json --format text

Prints a JSON report (schema smoke.report/1) and exits 0 pass, 1 fail, 2 usage or
config error, 3 could not evaluate, 129/130/143 interrupted. Standard library only.
"""

import sys

# Before anything can fail less clearly. This file has no annotations, so that even a
# Python 2 on a bare host parses it and gets here.
if sys.version_info < (3, 8):
    sys.stderr.write("smoke.py needs Python 3.8 or newer; this is %d.%d (%s)\n"
                     % (sys.version_info[0], sys.version_info[1], sys.executable))
    sys.exit(2)

# The rest is checks/main.py: a module's code is compiled once and kept, a script's on every start.
# Under python -I or -P the script's directory is not on sys.path: checks/ is looked for there last,
# after the standard library, so nothing planted beside smoke.py can stand in for a module of Python's.
try:
    import checks.main  # noqa: E402
except ImportError:
    import os  # noqa: E402
    sys.path.append(os.path.dirname(os.path.realpath(__file__)))
from checks.main import COMMANDS, DESCRIPTION, EXAMPLES, FOOTER, TOOLS, _parser, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
