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
