"""Samples of a load and what they say: latencies, errors by kind, nearest-rank percentiles,
a histogram; the facts perf judges.

A load's worker processes each fill a Samples, sort their own share and send it back
(dump/load, as bytes: a million latencies are 8 MB); the parent merges the sorted shares
without ever holding a list of floats.
"""

from __future__ import annotations

import array
import collections
import marshal
import math

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List

PERCENTILES = (("p50_ms", 50, 1), ("p90_ms", 90, 10), ("p95_ms", 95, 20), ("p99_ms", 99, 100),
               ("p999_ms", 99.9, 1000))  # name, percentile, the fewest samples it can be told from
_BUCKETS = 16  # histogram rows in text output, at most


class Samples:
    """The outcome of a run: latencies (ms, counted requests that answered 2xx/3xx), every
    other outcome by kind, and when the counted part began and ended. trouble: the tool's own
    (a descriptor limit, a worker lost), which makes the result an error, never a verdict
    on the server; deadline: the run's deadline cut the load short."""

    def __init__(self):
        self.latencies = array.array("d")
        self.errors: Dict[str, int] = collections.Counter()
        self.error_latencies = array.array("d")  # answered, but with an error status
        self.started = self.ended = 0.0
        self.aborted = ""  # why the load stopped early, when it did
        self.trouble = ""
        self.deadline = False
        self.ordered = False  # latencies sorted (each worker sorts its own share: no list of all of them)

    @property
    def count(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    def sort(self) -> None:
        self.latencies = array.array("d", sorted(self.latencies))
        self.ordered = True

    def merge(self, other: "Samples") -> None:
        """Add another's samples; two sorted shares stay sorted, merged without a list of floats."""
        if self.ordered and other.ordered or not self.latencies and other.ordered:
            import heapq
            merged = array.array("d")
            merged.extend(heapq.merge(self.latencies, other.latencies))
            self.latencies, self.ordered = merged, True
        else:
            self.latencies.extend(other.latencies)
            self.ordered = False
        self.error_latencies.extend(other.error_latencies)
        self.errors.update(other.errors)
        self.started = min(self.started or other.started, other.started or self.started)
        self.ended = max(self.ended, other.ended)
        self.aborted = self.aborted or other.aborted
        self.trouble = "; ".join(t for t in dict.fromkeys((self.trouble, other.trouble)) if t)
        self.deadline = self.deadline or other.deadline

    def dump(self) -> bytes:
        return marshal.dumps((self.latencies.tobytes(), self.error_latencies.tobytes(), dict(self.errors),
                              self.started, self.ended, self.aborted, self.ordered, self.trouble, self.deadline))

    @classmethod
    def load(cls, data: bytes) -> "Samples":
        samples = cls()
        (latencies, error_latencies, errors, samples.started, samples.ended, samples.aborted,
         samples.ordered, samples.trouble, samples.deadline) = marshal.loads(data)
        samples.latencies.frombytes(latencies)
        samples.error_latencies.frombytes(error_latencies)
        samples.errors.update(errors)
        return samples


def percentile(ordered, p: float) -> float:
    """Nearest rank: the smallest sample with at least p% of all samples at or below it."""
    rank = max(1, math.ceil(round(p * len(ordered) / 100.0, 9)))  # 99.9% of 1000 is 999, not 999.0000000000001
    return ordered[rank - 1]


def summarise(samples) -> Dict[str, Any]:
    ordered = samples.latencies if samples.ordered else sorted(samples.latencies)
    errors = sum(samples.errors.values())
    count = len(ordered) + errors
    duration = max(0.0, samples.ended - samples.started)
    facts: Dict[str, Any] = {"count": count, "ok": len(ordered), "errors": errors,
                             "error_rate": round(errors / count, 6) if count else 1.0,
                             "errors_by_kind": dict(samples.errors),
                             # answers per second: a refused connection is no throughput
                             "rps": round((len(ordered) + len(samples.error_latencies)) / duration, 1)
                             if duration > 0.001 else 0.0,
                             "duration_s": round(duration, 3), "n": len(ordered)}
    insufficient = {}
    if ordered:
        facts.update(min_ms=round(ordered[0], 3), mean_ms=round(sum(ordered) / len(ordered), 3),
                     max_ms=round(ordered[-1], 3))
    for name, p, needed in PERCENTILES:
        if len(ordered) >= needed:
            facts[name] = round(percentile(ordered, p), 3)
        else:
            insufficient[name] = "insufficient samples: %d of the %d %s needs" % (len(ordered), needed, name)
    if insufficient:
        facts["insufficient"] = insufficient
    if samples.aborted:
        facts["aborted"] = samples.aborted
    if samples.trouble:
        facts["trouble"] = samples.trouble
    if samples.deadline:
        facts["deadline_exceeded"] = True
    if ordered:
        facts["histogram"] = histogram(ordered)
    return facts


def histogram(ordered) -> List[List[float]]:
    """[[upper bound in ms, count], ...] over log-scaled buckets from the fastest to the slowest."""
    low, high = max(ordered[0], 0.001), max(ordered[-1], 0.001)
    if high <= low * 1.0001:
        return [[round(high, 3), len(ordered)]]
    rows = min(_BUCKETS, max(2, int(math.sqrt(len(ordered)))))  # a handful of samples gets a handful of rows
    step = (math.log(high) - math.log(low)) / rows
    bounds = [math.exp(math.log(low) + step * (i + 1)) for i in range(rows)]
    counts = [0] * rows
    import bisect
    previous = 0
    for i, bound in enumerate(bounds):
        index = bisect.bisect_right(ordered, bound) if i < rows - 1 else len(ordered)
        counts[i] = index - previous
        previous = index
    return [[round(bound, 3), count] for bound, count in zip(bounds, counts)]
