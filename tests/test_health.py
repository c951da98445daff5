"""checks/health.py: the health section's own settings, tiers (check defaults per tag and the run's
deadline), through a real smoke.py running real commands.
"""

import json
import time

from conftest import smoke


def test_a_tier_sets_its_checks_defaults_and_with_tag_the_runs_deadline(tmp_path):
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"health": {
        "tiers": {"daily": {"timeout": 60, "deadline": 1}, "hourly": {"timeout": 0.3}},
        "checks": [{"name": "slow", "kind": "command", "command": ["sleep", "5"], "tags": ["daily"]},
                   {"name": "quick", "kind": "command", "command": ["sleep", "5"], "tags": ["hourly"]},
                   {"name": "own", "kind": "command", "command": ["true"], "tags": ["hourly"], "timeout": 7}]}}))
    done = smoke("health", "--config", path, "--dry-run")
    assert "slow  " in done.stdout and "timeout=60s" in done.stdout.splitlines()[0]
    assert "timeout=0.3s" in done.stdout.splitlines()[1] and "timeout=7s" in done.stdout.splitlines()[2]
    started = time.monotonic()
    done = smoke("health", "--config", path, "--tag", "daily", "--state-dir", tmp_path)
    assert done.returncode == 1 and time.monotonic() - started < 4
    assert "deadline exceeded (the tier's deadline 1s)" in json.loads(done.stdout)["results"][0]["message"]
    done = smoke("health", "--config", path, "--tag", "daily", "--deadline", "3", "--state-dir", tmp_path)
    assert "deadline exceeded (--deadline 3s)" in json.loads(done.stdout)["results"][0]["message"]  # the flag wins
    path.write_text(json.dumps({"health": {"tiers": {"daily": {"timeout": 60, "severity": "warning"}},
                                           "checks": []}}))
    done = smoke("health", "--config", path, "--validate")
    assert done.returncode == 2 and "health.tiers.daily" in done.stderr
