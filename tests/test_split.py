"""The split of a run into parts (load/split.py): exact shares, interleaved uniform schedules, seeds, options."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpbench.errors import ConfigError
from smtpbench.load.messages import AddressTemplate
from smtpbench.load.scheduler import ArrivalSchedule, LoadShape
from smtpbench.load.sections import MAX_SEED, WorkloadConfig
from smtpbench.load.split import START_TOLERANCE_S, Part, parse_part, parse_start_at, split_workload

FAST = settings(max_examples=200, deadline=None, derandomize=True)


def parts(count: int) -> list[Part]:
    return [Part(i, count) for i in range(count)]


@FAST
@given(total=st.integers(0, 10**9), count=st.integers(1, 500))
def test_shares_sum_to_total_and_differ_by_at_most_one(total: int, count: int) -> None:
    shares = [p.share(total) for p in parts(count)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)  # the first `remainder` parts get the extra one


@FAST
@given(count=st.integers(1, 40), per_part=st.integers(1, 50))
def test_numbers_are_disjoint_and_cover_one_to_total(count: int, per_part: int) -> None:
    total = count * per_part - (count // 2)
    numbers = [p.number(k) for p in parts(count) for k in range(1, p.share(total) + 1)]
    assert sorted(numbers) == list(range(1, total + 1))


@FAST
@given(count=st.integers(1, 12), rate=st.floats(0.5, 5000.0), arrivals=st.integers(1, 200))
def test_union_of_uniform_part_schedules_is_evenly_spaced(count: int, rate: float, arrivals: int) -> None:
    """The parts' arrivals at rate/count interleave into the unsplit schedule k/rate."""
    times = []
    for p in parts(count):
        schedule = ArrivalSchedule(LoadShape(rate / count), "uniform", None, p.first_gap("uniform"))  # type: ignore[arg-type]
        times += [schedule.next() for _ in range(arrivals)]
    times.sort()
    whole = ArrivalSchedule(LoadShape(rate), "uniform", None)  # type: ignore[arg-type]
    expected = [whole.next() for _ in range(len(times))]
    assert times == pytest.approx(expected, rel=1e-9, abs=1e-9)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g == pytest.approx(1 / rate, rel=1e-6) for g in gaps)


@FAST
@given(seed=st.integers(0, MAX_SEED), count=st.integers(2, 64))
def test_derived_seeds_are_distinct_and_in_range(seed: int, count: int) -> None:
    seeds = [p.seed(seed) for p in parts(count)]
    assert len(set(seeds)) == count
    assert all(0 <= s <= MAX_SEED for s in seeds)
    assert Part().seed(seed) == seed


def workload(**keys: object) -> WorkloadConfig:
    return WorkloadConfig.model_validate(keys)


@FAST
@given(sessions=st.integers(1, 1000), messages=st.integers(1, 10**6), count=st.integers(1, 60), data=st.data())
def test_closed_workload_split_exactly(sessions: int, messages: int, count: int, data: st.DataObject) -> None:
    targets = data.draw(st.lists(st.integers(0, 1000), min_size=0, max_size=4))
    keys: dict[str, object] = {"sessions": sessions, "messages": messages, "seed": 7}
    if targets:
        keys["stages"] = [{"duration": "1s", "target": t} for t in targets]
    else:
        keys["duration"] = "1s"
    wl = workload(**keys)
    if count > min(messages, max([sessions, *targets])):
        with pytest.raises(ConfigError, match="cannot be split"):
            split_workload(wl, Part(0, count))
        return
    split = [split_workload(wl, p) for p in parts(count)]
    assert sum(w.sessions for w in split) == sessions
    assert sum(w.messages or 0 for w in split) == messages
    for i in range(len(targets)):
        assert sum(w.stages[i].target for w in split) == targets[i]
    assert len({w.seed for w in split}) == count


def test_open_workload_split_keeps_rate_sum_and_process() -> None:
    wl = workload(model="open", rate=100.0, arrival="poisson", max_in_flight=10, messages=7, duration="5s", seed=1)
    split = [split_workload(wl, p) for p in parts(3)]
    assert sum(w.rate for w in split) == pytest.approx(100.0)
    assert [w.max_in_flight for w in split] == [4, 3, 3]
    assert [w.messages for w in split] == [3, 2, 2]
    assert {w.arrival for w in split} == {"poisson"}
    assert Part(1, 3).first_gap("poisson") == 1.0


def test_templates_number_run_wide_and_name_the_worker() -> None:
    t = AddressTemplate("u{n}.s{session}.w{worker}@example.test", Part(2, 3))
    assert t.render(1, 1) == "u3.s3.w2@example.test"
    assert t.render(2, 5) == "u6.s15.w2@example.test"
    assert AddressTemplate("u{n}@x.test").render(4, 1) == "u4@x.test"


def test_part_of_a_part_is_a_finer_part() -> None:
    assert Part(1, 3).sub(1, 2) == Part(3, 6)
    whole = [Part(s, 3).sub(w, 2) for s in range(3) for w in range(2)]
    assert sorted(p.index for p in whole) == list(range(6))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3/3", "not below"),
        ("1", "not a part"),
        ("-1/3", "not a part"),
        ("0/0", "count must be"),
        ("a/b", "not a part"),
    ],
)
def test_bad_shard_is_one_line_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_part(text)


def test_start_at_forms_and_limits() -> None:
    now = 1_800_000_000.0
    assert parse_start_at("1800000010", now) == 1_800_000_010.0
    assert parse_start_at("2027-01-15T08:00:10Z", now) == 1_800_000_010.0
    assert parse_start_at("2027-01-15T08:00:10", now) == 1_800_000_010.0  # no zone: UTC
    assert parse_start_at("2027-01-15T09:00:10+01:00", now) == 1_800_000_010.0
    assert parse_start_at(str(now - START_TOLERANCE_S / 2), now) == now - START_TOLERANCE_S / 2
    with pytest.raises(ConfigError, match="in the past"):
        parse_start_at(str(now - START_TOLERANCE_S - 1), now)
    with pytest.raises(ConfigError, match="7 days"):
        parse_start_at(str(now + 8 * 86400), now)
    for bad in ("tomorrow", "nan", "inf", "", "1e20", "-1e20"):  # 1e20 s: a float, but no date
        with pytest.raises(ConfigError, match="not a time"):
            parse_start_at(bad, time.time())
