"""Samples: nearest-rank percentiles over every sample, sorted shares merged, the histogram."""

import array

from checks.probes import samples as sampling


def test_percentiles_are_nearest_rank_over_every_sample():
    ordered = list(range(1, 101))
    assert [sampling.percentile(ordered, p) for p in (50, 90, 95, 99, 100)] == [50, 90, 95, 99, 100]
    assert sampling.percentile([7.0], 99) == 7.0 and sampling.percentile([1, 2, 3, 4], 50) == 2
    samples = sampling.Samples()
    samples.latencies = array.array("d", [float(i) for i in range(1, 1001)])
    samples.errors["500"] = 10
    samples.started, samples.ended = 0.0, 2.0
    facts = sampling.summarise(samples)
    assert (facts["p50_ms"], facts["p999_ms"], facts["count"], facts["rps"]) == (500, 999, 1010, 500.0)  # answers/s
    assert facts["error_rate"] == round(10 / 1010, 6) and "insufficient" not in facts
    assert sum(count for _, count in facts["histogram"]) == 1000


def test_sorted_shares_merge_into_one_sorted_array():
    import random
    values = [random.random() for _ in range(5000)]
    total = sampling.Samples()
    for share in (values[:2000], values[2000:4500], values[4500:]):
        part = sampling.Samples()
        part.latencies = array.array("d", share)
        part.sort()
        total.merge(sampling.Samples.load(part.dump()))
    assert total.ordered and list(total.latencies) == sorted(values)


def _summary(values, run=None):
    samples = sampling.Samples()
    samples.latencies = array.array("d", values)
    samples.errors["500"] = 3
    samples.started, samples.ended = 0.0, 2.0
    if run is not None:
        samples.sort_runs(run)
    return samples, sampling.summarise(samples)


def test_percentiles_over_sorted_runs_are_exactly_those_of_one_sorted_array():
    import random
    for count, run in ((1, 7), (20, 7), (1000, 7), (1000, 1), (5000, 333), (3000, 5000)):
        values = [random.choice((random.random(), 0.5, float(random.randint(0, 9)))) for _ in range(count)]
        ordered = sorted(values)
        samples, facts = _summary(values, run)
        assert facts == _summary(ordered)[1], (count, run)  # every fact: percentiles, min, max, mean, histogram
        view = sampling._sorted_view(samples)
        assert [view.smallest(k) for k in range(1, count + 1)] == ordered
        assert [view.at_or_below(x) for x in (-1.0, 0.5, 3.0, 99.0)] == \
            [sum(v <= x for v in values) for x in (-1.0, 0.5, 3.0, 99.0)]
    assert _summary([3.0, 1.0, 2.0])[1]["p50_ms"] == 2.0  # unsorted, as a command target's are


def test_sorting_and_summarising_a_load_makes_no_list_of_every_sample():
    import random
    import tracemalloc
    samples = sampling.Samples()
    samples.latencies = array.array("d", (random.random() for _ in range(400000)))  # 3.2 MB
    tracemalloc.start()
    try:
        samples.sort_runs()
        facts = sampling.summarise(samples)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # a list of them all would be 400000 x 32 bytes (12.8 MB), a sorted copy 3.2 MB
    assert facts["n"] == 400000 and peak < 0.75 * 400000 * 8, peak


def test_shares_sent_over_pipes_are_read_into_one_array_and_one_cut_short_is_dropped():
    import os
    import random
    import threading
    shares, values, error_count = [], [], 0
    for count in (50000, 3, 0, 20000):  # more than a pipe holds: written while read
        share = sampling.Samples()
        share.latencies = array.array("d", (random.random() for _ in range(count)))
        share.error_latencies = array.array("d", [1.0] * (count % 7))
        share.errors["reset"] = 1
        share.started, share.ended = 10.0 + count % 3, 20.0 + count % 5
        values += share.latencies
        error_count += len(share.error_latencies)
        share.sort_runs(4096)
        shares.append(share)
    cut = sampling.Samples()  # a worker killed while it wrote: its head, then a part of its latencies
    cut.latencies = array.array("d", [5.0] * 40000)
    cut.sort_runs(4096)
    read_end, write_end = os.pipe()
    sent = []
    collector = threading.Thread(target=lambda: sent.append(b"".join(iter(lambda: os.read(read_end, 65536), b""))))
    collector.start()
    cut.send(write_end)
    os.close(write_end)
    collector.join()
    os.close(read_end)
    total = sampling.Samples()
    for share, data in [(share, None) for share in shares] + [(None, sent[0][:100000]), (None, b"\x05\x00\x00")]:
        read_end, write_end = os.pipe()

        def write(share=share, data=data, fd=write_end):
            try:
                if data is not None:
                    sampling._write_all(fd, data)
                else:
                    share.send(fd)
            finally:
                os.close(fd)
        writer = threading.Thread(target=write)
        writer.start()
        reader = sampling.ShareReader(read_end)
        while reader.read(total):
            pass
        writer.join()
        os.close(read_end)
        assert reader.complete == (share in shares)
        reader.drop(total)  # nothing, for a whole one
        if share in shares:  # sent, and freed as it went
            assert not share.latencies and not share.error_latencies
    assert len(total.latencies) == len(values) and len(total.error_latencies) == error_count
    assert dict(total.errors) == {"reset": 4} and (total.started, total.ended) == (10.0, 23.0)
    ordered = sorted(values)
    assert total.runs is not None and [sampling._sorted_view(total).smallest(k) for k in range(1, len(values), 997)] \
        == ordered[:-1:997]
    facts = sampling.summarise(total)
    assert [facts[name] for name in ("p50_ms", "p99_ms", "p999_ms")] == [
        round(sampling.percentile(ordered, p), 3) for p in (50, 99, 99.9)]


def test_shares_sorted_in_runs_merge_side_by_side():
    first, second = sampling.Samples(), sampling.Samples()
    first.latencies = array.array("d", [5.0, 1.0, 4.0, 2.0, 3.0])
    second.latencies = array.array("d", [0.5, 9.0, 0.1])
    first.sort_runs(2)
    second.sort_runs(2)
    first.merge(second)
    assert first.runs == [2, 4, 5, 7, 8] and not first.ordered
    assert [sampling._sorted_view(first).smallest(k) for k in range(1, 9)] == [0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0,
                                                                               9.0]


def test_the_latency_sketch_tells_every_percentile_within_its_accuracy_and_adds_up():
    """What `smoke.py summary` merges loads of several hosts by: buckets added are the sketch of all."""
    import random
    values = [random.lognormvariate(0, 1.5) for _ in range(20000)]
    _, facts = _summary(values, 1000)
    sketch = facts["latency_sketch"]
    assert sketch["accuracy"] == sampling.SKETCH_ACCURACY and sum(n for _, n in sketch["buckets"]) == 20000
    assert _summary(sorted(values))[1]["latency_sketch"] == sketch  # sorted in runs or not
    for name, found in sampling.sketch_percentiles(sketch["buckets"], sketch["accuracy"]).items():
        assert abs(found / facts[name] - 1) <= sampling.SKETCH_ACCURACY + 1e-3 / facts[name], name
    added = {}
    for half in (values[:7000], values[7000:]):
        for index, count in _summary(half)[1]["latency_sketch"]["buckets"]:
            added[index] = added.get(index, 0) + count
    assert sorted(added.items()) == [tuple(bucket) for bucket in sketch["buckets"]]
