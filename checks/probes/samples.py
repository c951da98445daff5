"""Samples of a load and what they say: latencies, errors by kind, nearest-rank percentiles,
a histogram; the facts perf judges.

A load's worker processes each fill a Samples, sort it in runs of RUN samples (in place: a
list of floats costs 32 bytes a sample, the array 8) and send it back a run at a time, each
freed once written (send: a short head, then the arrays' bytes as they lie); the parent adds
each run, once whole, at the end of its own array (ShareReader), so a million latencies cost
8 MB in all and nothing is merged: percentiles, the histogram and the mean are worked out
over the sorted runs, exactly.
"""

from __future__ import annotations

import array
import bisect
import collections
import marshal
import math
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

PERCENTILES = (("p50_ms", 50, 1), ("p90_ms", 90, 10), ("p95_ms", 95, 20), ("p99_ms", 99, 100),
               ("p999_ms", 99.9, 1000))  # name, percentile, the fewest samples it can be told from
_BUCKETS = 16  # histogram rows in text output, at most
SKETCH_ACCURACY = 0.005  # of the latency sketch: a percentile from it is within 0.5% of the exact one
KEEP_MAX = 1000000  # samples a report keeps at most when asked (keep_samples): some 7 MB of JSON
RUN = 16384  # samples sorted at a time: sorting them costs a list of 0.5 MB (and 1e6 samples are 62 runs)


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
        self.ordered = False  # latencies sorted
        self.runs: Optional[List[int]] = None  # or sorted in runs: where each ends (latencies[0:runs[0]], ...)

    @property
    def count(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    def sort(self) -> None:
        self.latencies = array.array("d", sorted(self.latencies))
        self.ordered, self.runs = True, None

    def sort_runs(self, size: int = RUN) -> None:
        """Sort the latencies in place, `size` at a time: runs of sorted samples, with no list of
        all of them (one run, when they are that few: then sorted)."""
        values = self.latencies
        if len(values) <= size:
            values[:] = array.array("d", sorted(values))
            self.ordered, self.runs = True, None
            return
        for start in range(0, len(values), size):
            values[start:start + size] = array.array("d", sorted(values[start:start + size]))
        self.ordered, self.runs = False, list(range(size, len(values), size)) + [len(values)]

    def sorted_runs(self) -> Optional[List[int]]:
        """Where each sorted run of the latencies ends; None when they are not sorted in runs."""
        count = len(self.latencies)
        if self.ordered or count <= 1:
            return [count] if count else []
        return list(self.runs) if self.runs is not None else None

    def _set_runs(self, runs: Optional[List[int]]) -> None:
        self.ordered = runs is not None and len(runs) <= 1
        self.runs = runs if runs is not None and not self.ordered else None

    def merge(self, other: "Samples") -> None:
        """Add another's samples; two sorted shares stay sorted, merged without a list of floats;
        shares sorted in runs stay so, side by side."""
        if self.ordered and other.ordered or not self.latencies and other.ordered:
            import heapq
            merged = array.array("d")
            merged.extend(heapq.merge(self.latencies, other.latencies))
            self.latencies, self.ordered, self.runs = merged, True, None
        else:
            mine, theirs, offset = self.sorted_runs(), other.sorted_runs(), len(self.latencies)
            self.latencies.extend(other.latencies)
            self._set_runs(None if mine is None or theirs is None else mine + [offset + end for end in theirs])
        self.error_latencies.extend(other.error_latencies)
        self.merge_facts(other)

    def merge_facts(self, other: "Samples") -> None:
        """Add another's errors, span and troubles (not its latencies)."""
        self.errors.update(other.errors)
        self.started = min(self.started or other.started, other.started or self.started)
        self.ended = max(self.ended, other.ended)
        self.aborted = self.aborted or other.aborted
        self.trouble = "; ".join(t for t in dict.fromkeys((self.trouble, other.trouble)) if t)
        self.deadline = self.deadline or other.deadline

    def _facts(self) -> tuple:
        return (dict(self.errors), self.started, self.ended, self.aborted, self.ordered, self.trouble,
                self.deadline, self.runs)

    def _set_facts(self, facts: tuple) -> None:
        errors, self.started, self.ended, self.aborted, self.ordered, self.trouble, self.deadline, self.runs = facts
        self.errors.update(errors)

    def dump(self) -> bytes:
        return marshal.dumps((self.latencies.tobytes(), self.error_latencies.tobytes()) + self._facts())

    @classmethod
    def load(cls, data: bytes) -> "Samples":
        samples = cls()
        values = marshal.loads(data)
        samples.latencies.frombytes(values[0])
        samples.error_latencies.frombytes(values[1])
        samples._set_facts(values[2:])
        return samples

    def send(self, fd: int) -> None:
        """Write this share to a pipe as ShareReader reads it, emptying it as it goes: its length
        and head (marshal), then the latencies' and the error latencies' bytes as they lie in
        memory (no copy), a part at a time from the end (the latencies sorted in runs: a run
        each), each part freed once written, so no part is in both processes for long."""
        runs = self.sorted_runs()
        parts = [_parts(len(self.latencies), runs), _parts(len(self.error_latencies), None)]
        head = marshal.dumps(self._facts() + ([end - start for start, end in parts[0]],
                                              [end - start for start, end in parts[1]], runs is not None))
        _write_all(fd, len(head).to_bytes(4, "little") + head)
        for values, spans in zip((self.latencies, self.error_latencies), parts):
            for start, end in spans:
                with memoryview(values) as view, view.cast("B") as data:
                    _write_all(fd, data[start * 8:end * 8])
                del values[start:]  # its memory goes back as the reader's grows


def _parts(count: int, runs: Optional[List[int]]) -> List[Tuple[int, int]]:
    """(start, end) of each part of `count` samples as they are sent, from the end: each sorted
    run, or RUN at a time."""
    ends = runs if runs is not None else list(range(RUN, count, RUN)) + [count] if count else []
    return [(start, end) for start, end in reversed(list(zip([0] + ends[:-1], ends))) if end > start]


def _write_all(fd: int, data) -> None:
    with memoryview(data) as view:
        while view:
            written = os.write(fd, view)
            view = view[written:]


class ShareReader:
    """A worker's share, as Samples.send writes it, read from its pipe as it comes: the head, then
    each part of its latencies (a sorted run) added at the end of the total's array once it is
    whole (its pages are touched as its bytes come: no room made in advance). One share is added
    at a time (filling says which may be), so one cut short is cut from the end (drop)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.head = bytearray()
        self.size: Optional[int] = None  # of the head
        self.share: Optional[Samples] = None  # the head once read: the share without its latencies
        self.parts: List[list] = []  # [array, its part's length] still to read, in order
        self.sorted = False  # its latencies sorted in runs: a part each
        self.part = bytearray()  # the part under way
        self.marks: Optional[Tuple[int, int]] = None  # the total's lengths before this share, once filling
        self.before: Optional[List[int]] = None  # the total's sorted runs before it
        self.runs: Optional[List[int]] = None  # and with this share's so far
        self.complete = False

    @property
    def filling(self) -> bool:
        """Its head is read and its latencies are not: it reads only when its turn to fill comes."""
        return self.share is not None and not self.complete

    def read(self, total: Samples) -> bool:
        """Read what has come; False when the pipe is closed (the share whole, or cut short: see
        complete). A share that is not what send writes is a ValueError."""
        if self.share is None:
            want = 4 - len(self.head) if self.size is None else self.size - len(self.head)
            chunk = os.read(self.fd, want)
            if not chunk:
                return False
            self.head += chunk
            if self.size is None and len(self.head) == 4:
                self.size, self.head = int.from_bytes(self.head, "little"), bytearray()
            if self.size is not None and len(self.head) == self.size:
                facts = marshal.loads(bytes(self.head))
                self.share = Samples()
                self.share._set_facts(facts[:-3])
                self.parts = [[total.latencies, count] for count in facts[-3]] + \
                    [[total.error_latencies, count] for count in facts[-2]]
                self.sorted, self.head = facts[-1], bytearray()
            return True
        if self.complete:
            if os.read(self.fd, 1):
                raise ValueError("more than the share")
            return False
        if self.marks is None:  # its turn
            self.before = total.sorted_runs()
            self.runs = list(self.before) if self.sorted and self.before is not None else None
            self.marks = (len(total.latencies), len(total.error_latencies))
            if not self.parts:
                return self._fill(total)
        values, count = self.parts[0]
        chunk = os.read(self.fd, min(count * 8 - len(self.part), 1 << 20))
        if not chunk:
            return False
        self.part += chunk
        if len(self.part) == count * 8:
            values.frombytes(self.part)
            self.part = bytearray()
            self.parts.pop(0)
            if self.runs is not None and values is total.latencies:
                self.runs.append(len(values))
            if not self.parts:
                self._fill(total)
        return True

    def _fill(self, total: Samples) -> bool:
        self.complete = True
        total._set_runs(self.runs)
        total.merge_facts(self.share)
        return True

    def drop(self, total: Samples) -> None:
        """A share cut short: what of it was read is taken out of the total again."""
        if self.marks is not None and not self.complete:
            del total.latencies[self.marks[0]:]
            del total.error_latencies[self.marks[1]:]
            total._set_runs(self.before)


def _rank(count: int, p: float) -> int:
    return max(1, math.ceil(round(p * count / 100.0, 9)))  # 99.9% of 1000 is 999, not 999.0000000000001


def percentile(ordered, p: float) -> float:
    """Nearest rank: the smallest sample with at least p% of all samples at or below it."""
    return ordered[_rank(len(ordered), p) - 1]


class _Sorted:
    """Values sorted in runs (values[0:ends[0]], values[ends[0]:ends[1]], ...), read as one sorted
    sequence without making it: its k-th smallest, how many are at or below x, its ends."""

    def __init__(self, values, ends: List[int]):
        self.values = values
        self.spans = [(start, end) for start, end in zip([0] + ends[:-1], ends) if end > start]

    def __len__(self) -> int:
        return sum(end - start for start, end in self.spans)

    def first(self) -> float:
        return min(self.values[start] for start, _ in self.spans)

    def last(self) -> float:
        return max(self.values[end - 1] for _, end in self.spans)

    def at_or_below(self, x: float) -> int:
        values = self.values
        return sum(bisect.bisect_right(values, x, start, end) - start for start, end in self.spans)

    def smallest(self, k: int) -> float:
        """The k-th smallest (k from 1): a pivot, the weighted median of what is left of each run's
        middle, sorts out at least a quarter of what is left each time; each count is bisects."""
        values = self.values
        if len(self.spans) == 1:
            return values[self.spans[0][0] + k - 1]
        left = [list(span) for span in self.spans]
        while True:
            middles = sorted((values[(low + high) // 2], high - low) for low, high in left if high > low)
            half, weight = sum(w for _, w in middles) / 2.0, 0
            for pivot, w in middles:
                weight += w
                if weight >= half:
                    break
            below = sum(bisect.bisect_left(values, pivot, start, end) - start for start, end in self.spans)
            at_or_below = sum(bisect.bisect_right(values, pivot, start, end) - start for start, end in self.spans)
            if below < k <= at_or_below:
                return pivot
            for span in left:
                if k <= below:  # it is smaller than the pivot
                    span[1] = bisect.bisect_left(values, pivot, span[0], span[1])
                else:
                    span[0] = bisect.bisect_right(values, pivot, span[0], span[1])


def _sorted_view(samples) -> _Sorted:
    runs = samples.sorted_runs()
    if runs is not None:
        return _Sorted(samples.latencies, runs)
    copy = Samples()  # sorted in runs as a copy: 8 bytes a sample, not a list's 32
    copy.latencies = array.array("d", samples.latencies)
    copy.sort_runs()
    return _Sorted(copy.latencies, copy.sorted_runs())


def summarise(samples, keep: bool = False) -> Dict[str, Any]:
    """The facts of a load; keep: with every counted latency (samples_ms, up to KEEP_MAX), so that
    loads run on several hosts merge into exact percentiles (smoke.py summary)."""
    ordered = _sorted_view(samples)
    ok = len(ordered)
    errors = sum(samples.errors.values())
    count = ok + errors
    duration = max(0.0, samples.ended - samples.started)
    facts: Dict[str, Any] = {"count": count, "ok": ok, "errors": errors,
                             "error_rate": round(errors / count, 6) if count else 1.0,
                             "errors_by_kind": dict(samples.errors),
                             # answers per second: a refused connection is no throughput
                             "rps": round((ok + len(samples.error_latencies)) / duration, 1)
                             if duration > 0.001 else 0.0,
                             "duration_s": round(duration, 3), "n": ok}
    insufficient = {}
    if ok:  # fsum: the exact sum, whatever the order
        facts.update(min_ms=round(ordered.first(), 3), mean_ms=round(math.fsum(samples.latencies) / ok, 3),
                     max_ms=round(ordered.last(), 3))
    for name, p, needed in PERCENTILES:
        if ok >= needed:
            facts[name] = round(ordered.smallest(_rank(ok, p)), 3)
        else:
            insufficient[name] = "insufficient samples: %d of the %d %s needs" % (ok, needed, name)
    if insufficient:
        facts["insufficient"] = insufficient
    if samples.aborted:
        facts["aborted"] = samples.aborted
    if samples.trouble:
        facts["trouble"] = samples.trouble
    if samples.deadline:
        facts["deadline_exceeded"] = True
    if ok:
        facts["histogram"] = _histogram(ordered)
        facts["latency_sketch"] = {"accuracy": SKETCH_ACCURACY, "buckets": _sketch(ordered)}
    if keep and ok > KEEP_MAX:
        facts["samples_not_kept"] = "%d samples: more than the %d a report keeps" % (ok, KEEP_MAX)
    elif keep and ok:
        facts["samples_ms"] = [round(value, 3) for value in samples.latencies]
    return facts


def _sketch(ordered: _Sorted) -> List[List[int]]:
    """The latencies as DDSketch's buckets, [[i, count], ...] for those not empty: bucket i holds
    those in (g^(i-1), g^i] ms, g = (1 + a) / (1 - a), a = SKETCH_ACCURACY. Its middle, 2 g^i / (g + 1),
    is within a of each of them, so a percentile told from the counts alone, of one load or of
    several added bucket by bucket, is within a of the exact one (sketch_value)."""
    count, log_g = len(ordered), math.log(sketch_gamma(SKETCH_ACCURACY))
    index = math.ceil(math.log(max(ordered.first(), 1e-6)) / log_g) - 1  # one below: a rounding cannot skip it
    buckets, previous = [], 0
    while previous < count:
        at = ordered.at_or_below(math.exp(index * log_g))
        if at > previous:
            buckets.append([index, at - previous])
            previous = at
        index += 1
    return buckets


def sketch_gamma(accuracy: float) -> float:
    return (1 + accuracy) / (1 - accuracy)


def sketch_value(index: int, accuracy: float) -> float:
    """What bucket index of a sketch of that accuracy stands for: within accuracy of all it holds."""
    gamma = sketch_gamma(accuracy)
    return 2 * gamma ** index / (gamma + 1)


def sketch_percentiles(buckets: List[List[int]], accuracy: float) -> Dict[str, float]:
    """The percentiles (PERCENTILES' names) the counts of a sketch tell, nearest rank, each as
    sketch_value says (within accuracy of the exact one), those it has samples enough for;
    buckets sorted by index."""
    total = sum(count for _, count in buckets)
    found = {}
    for name, p, needed in PERCENTILES:
        rank, seen = _rank(total, p), 0
        for index, count in buckets if total >= needed else ():
            seen += count
            if seen >= rank:
                found[name] = sketch_value(index, accuracy)
                break
    return found


def histogram(ordered) -> List[List[float]]:
    """[[upper bound in ms, count], ...] over log-scaled buckets from the fastest to the slowest."""
    return _histogram(_Sorted(ordered, [len(ordered)]))


def _histogram(ordered: _Sorted) -> List[List[float]]:
    count = len(ordered)
    low, high = max(ordered.first(), 0.001), max(ordered.last(), 0.001)
    if high <= low * 1.0001:
        return [[round(high, 3), count]]
    rows = min(_BUCKETS, max(2, int(math.sqrt(count))))  # a handful of samples gets a handful of rows
    step = (math.log(high) - math.log(low)) / rows
    bounds = [math.exp(math.log(low) + step * (i + 1)) for i in range(rows)]
    counts = [0] * rows
    previous = 0
    for i, bound in enumerate(bounds):
        index = ordered.at_or_below(bound) if i < rows - 1 else count
        counts[i] = index - previous
        previous = index
    return [[round(bound, 3), count] for bound, count in zip(bounds, counts)]
