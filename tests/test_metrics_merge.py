"""Results stay mergeable: two recorders' snapshots add up to one recorder's totals."""

from __future__ import annotations

import random

from smtpbench.metrics.recorder import Recorder, merge_snapshots


def test_merge_is_lossless() -> None:
    rng = random.Random(7)
    a, b, both = Recorder(0.0), Recorder(0.0), Recorder(0.0)
    for i in range(5000):
        tag = rng.choice(["mail", "data_end", "session"])
        value = rng.randint(1, 5_000_000)
        (a if i % 2 else b).record(tag, value)
        both.record(tag, value)
    for rec, code in ((a, 250), (b, 451), (both, 250), (both, 451)):
        rec.counters.counts["messages_sent"] += 1
        rec.counters.replies["DATA_END"][code] += 1
        if code >= 400:
            rec.counters.errors["temp_fail"] += 1
    for rec in (a, b, both):
        rec.rotate(1.0)
    hists, counters = merge_snapshots([a.snapshot(), b.snapshot()])
    assert set(hists) == set(both.totals)
    for tag, h in hists.items():
        expected = both.totals[tag]
        assert h.get_total_count() == expected.get_total_count()
        for pct in (50.0, 90.0, 99.0, 99.9, 100.0):
            assert h.get_value_at_percentile(pct) == expected.get_value_at_percentile(pct)
    assert counters["counts"] == {"messages_sent": 2}
    assert counters["replies"] == {"DATA_END": {"250": 1, "451": 1}}
    assert counters["errors"] == {"temp_fail": 1}
