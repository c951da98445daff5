"""The baseline smoke.py's scale is held to: the same checks from the same config, run by a
plain thread pool, into a JSON report. What a careful engineer would write in 40 lines."""
import json
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def check(table):
    started = time.monotonic()
    try:
        if table["kind"] == "file":
            info = os.stat(table["path"])
            facts = {"exists": True, "size": info.st_size, "mode": oct(info.st_mode & 0o7777)}
        else:
            host, port = table["address"].rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=5).close()
            facts = {"connected": True}
        status = "pass"
    except OSError as exc:
        facts, status = {"error": str(exc)}, "fail"
    return {"name": table["name"], "status": status, "facts": facts,
            "duration_ms": (time.monotonic() - started) * 1000}


def main():
    with open(sys.argv[1]) as fh:
        checks = json.load(fh)["health"]["checks"]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(check, checks))
    failed = sum(r["status"] != "pass" for r in results)
    report = {"status": "fail" if failed else "pass", "results": results}
    with open(sys.argv[2], "w") as fh:
        json.dump(report, fh)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
