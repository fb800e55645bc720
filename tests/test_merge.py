"""smtpbench merge on shard folders written by the engine's own writers: lossless, status, bad input."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from smtpbench.errors import EXIT_FAILED, EXIT_OK, EXIT_RUN_ERROR, EXIT_USAGE
from smtpbench.load.merge import combined_status
from smtpbench.load.results import ResultsDir
from smtpbench.metrics.hgrm import write_hgrm
from smtpbench.metrics.hlog import HlogWriter, read_hlog
from smtpbench.metrics.recorder import Recorder, new_histogram
from smtpbench.metrics.summary import build_summary, phase_stats
from tests.sinkutil import SinkThread
from tests.test_bad_input import invoke

PROFILE = '[workload]\nsessions = 3\nduration = "5s"\nseed = 11\n[output]\ninterval = "1s"\nresults_dir = "{dir}"\n'
TAGS = ("connect", "data_end", "session", "corrected.session")


def write_shard(
    base: Path,
    index: int,
    count: int,
    start: float,
    values: dict[str, list[list[int]]],
    status: str = "completed",
    wait_s: float = 0.0,
) -> Path:
    """A shard folder as the engine writes it: intervals of 1 s (ragged last one), summary with ``shard``;
    ``wait_s``: a [delivery] wait after the load (in elapsed_s, not in load_s)."""
    results = ResultsDir(str(base), f"shard-{index}-{start:.0f}")
    results.write_profile(PROFILE.format(dir=base))
    rec = Recorder(start)
    hlog = HlogWriter(results.open_hlog(), start)
    intervals = max(len(v) for v in values.values())
    for k in range(intervals):
        for tag, per_interval in values.items():
            for v in per_interval[k] if k < len(per_interval) else []:
                rec.record(tag, v)
        rec.counters.counts["messages_accepted"] += 10 + index
        rec.counters.replies["DATA"][250] += 10 + index
        rec.counters.errors["timeout"] += index
        hlog.write(rec.rotate(start + k + (1.0 if k < intervals - 1 else 0.37)))
    results.close_hlog()
    elapsed = intervals - 1 + 0.37
    summary = build_summary(
        run_id=results.run_id,
        status=status,
        started_at="",
        elapsed_s=elapsed + wait_s,
        throughput_s=elapsed,
        histograms=rec.totals,
        counters=rec.counters.to_dict(),
        model="closed",
        target="127.0.0.1:2525",
        extra={"profile": "p.toml", "seed": 1000 + index, "values_clamped": 0},
    )
    summary["shard"] = {"index": index, "count": count, "seed": 1000 + index, "base_seed": 11}
    results.write_final(summary, rec.totals)
    return results.path


def random_values(rng: random.Random, intervals: int) -> dict[str, list[list[int]]]:
    return {
        tag: [[int(rng.lognormvariate(7, 1.5)) + 1 for _ in range(rng.randrange(0, 60))] for _ in range(intervals)]
        for tag in TAGS
    }


def merge(tmp_path: Path, *dirs: Path, out: str = "merged") -> tuple[int, str, str, dict[str, Any]]:
    target = tmp_path / out
    code, stdout, stderr = invoke(["merge", *map(str, dirs), "-o", str(target), "-q"])
    summary = json.loads((target / "summary.json").read_text()) if (target / "summary.json").exists() else {}
    return code, stdout, stderr, summary


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_merge_is_lossless(tmp_path: Path, seed: int) -> None:
    """Merged log, totals, .hgrm and phase statistics equal those of one histogram of every value."""
    rng = random.Random(seed)
    starts = [1_800_000_000.0 + rng.uniform(0, 0.8) for _ in range(3)]  # not aligned: merged by time
    data = [random_values(rng, rng.randrange(2, 6)) for _ in starts]
    dirs = [write_shard(tmp_path / f"s{i}", i, 3, starts[i], data[i]) for i in range(3)]
    code, _, stderr, s = merge(tmp_path, *dirs)
    assert code == EXIT_OK, stderr
    out = tmp_path / "merged"
    everything = {tag: new_histogram() for tag in TAGS}
    for d in data:
        for tag, per_interval in d.items():
            for values in per_interval:
                for v in values:
                    everything[tag].record_value(v)
    base, intervals = read_hlog(out / "histograms.hlog")
    assert base == pytest.approx(min(starts), abs=1e-3)
    from_log = {tag: new_histogram() for tag in TAGS}
    spans: dict[str, list[tuple[float, float]]] = {}
    for iv in intervals:
        from_log[iv.tag].add(iv.histogram)
        spans.setdefault(iv.tag, []).append((iv.start, iv.start + iv.length))
    for tag in TAGS:
        assert list(from_log[tag].counts) == list(everything[tag].counts), tag
        starts_of_tag = [a for a, _ in spans[tag]]
        assert starts_of_tag == sorted(starts_of_tag) and len(set(starts_of_tag)) == len(starts_of_tag)
        buf = io.StringIO()
        write_hgrm(buf, everything[tag])
        assert (out / f"{tag}.hgrm").read_text() == buf.getvalue()
    for tag in ("connect", "data_end", "session"):
        assert s["phases"][tag] == phase_stats(everything[tag])
    assert s["corrected"]["session"] == phase_stats(everything["corrected.session"])
    intervals_of = [max(len(v) for v in d.values()) for d in data]
    accepted = sum((10 + i) * n for i, n in enumerate(intervals_of))
    assert s["counts"]["messages_accepted"] == accepted == s["replies"]["DATA"]["250"]
    assert s["errors"] == {"timeout": sum(i * n for i, n in enumerate(intervals_of))}
    span = max(st + n - 1 + 0.37 for st, n in zip(starts, intervals_of, strict=True)) - min(starts)
    assert s["elapsed_s"] == pytest.approx(span, abs=2e-3)
    assert s["throughput"]["messages_per_s"] == pytest.approx(accepted / span, rel=1e-2)
    assert s["status"] == "completed" and s["seed"] == 11
    assert [p["index"] for p in s["shards"]] == [0, 1, 2] and s["shards_missing"] == []
    assert "[workload]" in (out / "profile.toml").read_text()


def test_merged_throughput_leaves_out_the_delivery_waits(tmp_path: Path) -> None:
    """Shards that waited for delivery after their load: elapsed_s spans the waits, throughput only the loads
    (it was divided by the whole span, as a single run's was before it left its wait out)."""
    values = {"session": [[1000]] * 3}
    dirs = [write_shard(tmp_path / f"s{i}", i, 2, 1_800_000_000.0 + i * 0.5, values, wait_s=4.0) for i in range(2)]
    code, _, stderr, s = merge(tmp_path, *dirs)
    assert code == EXIT_OK, stderr
    load_span = 0.5 + 2.37  # the second shard starts 0.5 s later; each loads 2.37 s
    assert s["elapsed_s"] == pytest.approx(load_span + 4.0, abs=2e-3)
    assert s["load_s"] == pytest.approx(load_span, abs=2e-3)
    accepted = s["counts"]["messages_accepted"]
    assert accepted == 3 * 10 + 3 * 11
    assert s["throughput"]["messages_per_s"] == pytest.approx(accepted / load_span, rel=1e-2)


def test_status_combination() -> None:
    assert combined_status(["completed"] * 3) == "completed"
    assert combined_status(["interrupted", "interrupted"]) == "interrupted"
    assert combined_status(["completed", "failed"]) == "degraded"
    assert combined_status(["completed", "completed"], missing=1) == "degraded"


def test_failed_or_missing_shard_degrades_with_exit_3(tmp_path: Path) -> None:
    rng = random.Random(5)
    a = write_shard(tmp_path / "a", 0, 3, 1_800_000_000.0, random_values(rng, 2))
    b = write_shard(tmp_path / "b", 1, 3, 1_800_000_000.0, random_values(rng, 2), status="failed")
    code, _, stderr, s = merge(tmp_path, a, b)
    assert code == EXIT_RUN_ERROR
    assert s["status"] == "degraded" and s["shards_missing"] == [2]
    assert "shards missing: 2" in stderr and "degraded" in stderr


def test_retried_shard_supersedes_the_earlier_attempt(tmp_path: Path) -> None:
    rng = random.Random(6)
    write_shard(tmp_path / "s0", 0, 2, 1_800_000_000.0, random_values(rng, 2), status="failed")
    write_shard(tmp_path / "s0", 0, 2, 1_800_000_100.0, random_values(rng, 2))
    write_shard(tmp_path / "s1", 1, 2, 1_800_000_100.0, random_values(rng, 2))
    code, _, stderr, s = merge(tmp_path, tmp_path / "s0", tmp_path / "s1")  # folders holding run folders
    assert code == EXIT_OK, stderr
    assert "superseded" in stderr and "1800000000" in stderr
    assert [p["status"] for p in s["shards"]] == ["completed", "completed"]


def test_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    rng = random.Random(7)
    a = write_shard(tmp_path / "a", 0, 2, 1_800_000_000.0, random_values(rng, 2))
    b = write_shard(tmp_path / "b", 1, 3, 1_800_000_000.0, random_values(rng, 2))
    c = write_shard(tmp_path / "c", 1, 2, 1_800_000_000.0, random_values(rng, 2))
    (c / "profile.toml").write_text((c / "profile.toml").read_text().replace("sessions = 3", "sessions = 4"))
    plain = tmp_path / "plain"
    shutil.copytree(a, plain)
    summary = json.loads((plain / "summary.json").read_text())
    del summary["shard"]
    (plain / "summary.json").write_text(json.dumps(summary))
    d = write_shard(tmp_path / "d", 1, 2, 1_800_000_000.0, random_values(rng, 2))
    with (d / "profile.toml").open("a") as f:
        f.write('[thresholds]\n"transaction.p42" = "< 1s"\n')
    (tmp_path / "exists").mkdir()
    cases = [
        ((d,), "merged0", "transaction.p42"),
        ((a, b), "merged1", "different splits"),
        ((a, c), "merged2", "another profile"),
        ((a, plain), "merged3", "not a shard's results"),
        ((a, tmp_path / "nowhere"), "merged4", "not found"),
        ((a,), "exists", "already exists"),
    ]
    for dirs, out, message in cases:
        code, _, stderr, _ = merge(tmp_path, *dirs, out=out)
        assert code == EXIT_USAGE, (message, stderr)
        assert message in stderr and stderr.count("\n") == 1 and "Traceback" not in stderr
        assert out == "exists" or not (tmp_path / out).exists()  # nothing written on bad input


def with_run_keys(folder: Path, index: int, lines: int, thresholds: str = "") -> None:
    """Add what a run of this version writes beside the basics: timeline.jsonl, unfinished, generator, thresholds."""
    summary = json.loads((folder / "summary.json").read_text())
    summary["unfinished"] = {"banner": index + 1}
    summary["unfinished_min_wait_us"] = {"banner": 1000 * (3 - index)}
    summary["status_reason"] = None
    summary["generator"] = {
        "cpu_percent_p50": 10.0 + index,
        "saturated": index == 1,
        "reason": "busy" if index else None,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    with (folder / "timeline.jsonl").open("w") as f:
        for k in range(lines):
            length = 1.0 if k < lines - 1 else 0.37
            line = {"t": k, "len": length, "in_flight": index + 1, "counts": {"messages_accepted": 10 + index}}
            line |= {"proxy_announced": 5} if index == 2 else {}  # a PROXY run's key (only this shard's)
            f.write(json.dumps({**line, "errors": {"timeout": index} if index else {}}) + "\n")
    if thresholds:
        with (folder / "profile.toml").open("a") as f:
            f.write("[thresholds]\n" + thresholds)


def test_merge_combines_timeline_new_keys_and_judges_thresholds_again(tmp_path: Path) -> None:
    """Timeline summed by time, unfinished summed/min, generator per shard, thresholds judged on the merged figures."""
    rng = random.Random(8)
    starts = [1_800_000_000.0, 1_800_000_000.2, 1_800_000_000.3]  # midpoints stay in the earliest shard's cells
    intervals = [3, 4, 2]
    accepted = sum((10 + i) * n for i, n in enumerate(intervals))  # 10*3 + 11*4 + 12*2 = 98
    # Each shard accepted at most 44 messages: the first fails on every shard and holds only merged; the
    # second holds on every shard and fails only merged.
    thresholds = f'"counts.messages_accepted" = [">= {accepted}", "<= 50"]\n'
    dirs = []
    for i in range(3):
        d = write_shard(tmp_path / f"s{i}", i, 3, starts[i], random_values(rng, intervals[i]))
        with_run_keys(d, i, intervals[i], thresholds)
        dirs.append(d)
    code, stdout, stderr, s = merge(tmp_path, *dirs)
    assert code == EXIT_FAILED, stderr
    assert "1 threshold(s) failed: counts.messages_accepted <= 50 (98)" in stderr
    assert s["status"] == "completed" and s["counts"]["messages_accepted"] == accepted
    assert [(t["condition"], t["value"], t["ok"]) for t in s["thresholds"]] == [
        (f">= {accepted}", accepted, True),
        ("<= 50", accepted, False),
    ]
    assert s["unfinished"] == {"banner": 1 + 2 + 3} and s["unfinished_min_wait_us"] == {"banner": 1000}
    assert s["status_reason"] is None
    gen = s["generator"]
    assert gen["saturated"] is True and gen["reason"] == "shard 1: busy"
    assert [(g["index"], g["cpu_percent_p50"]) for g in gen["shards"]] == [(0, 10.0), (1, 11.0), (2, 12.0)]
    lines = [json.loads(line) for line in (tmp_path / "merged" / "timeline.jsonl").read_text().splitlines()]
    assert [line["t"] for line in lines] == [0, 1, 2, 3.2]  # the last cell holds shard 1 alone: its own span
    assert [line["counts"]["messages_accepted"] for line in lines] == [33, 33, 21, 11]
    assert [line["in_flight"] for line in lines] == [6, 6, 1 + 2, 2]
    assert [line["errors"] for line in lines] == [{"timeout": 3}, {"timeout": 3}, {"timeout": 1}, {"timeout": 1}]
    assert [line.get("proxy_announced") for line in lines] == [5, 5, None, None]  # summed where present
    assert lines[-1]["len"] == 0.37 and sum(line["counts"]["messages_accepted"] for line in lines) == accepted
    report = (tmp_path / "merged" / "report.html").read_text()
    assert "<svg" in report and "counts.messages_accepted" in report


def test_merge_reason_names_the_shards_that_did_not_complete(tmp_path: Path) -> None:
    rng = random.Random(9)
    a = write_shard(tmp_path / "a", 0, 2, 1_800_000_000.0, random_values(rng, 2))
    b = write_shard(tmp_path / "b", 1, 2, 1_800_000_000.0, random_values(rng, 2), status="failed")
    summary = json.loads((b / "summary.json").read_text())
    (b / "summary.json").write_text(json.dumps({**summary, "status_reason": "no session started"}))
    code, _, stderr, s = merge(tmp_path, a, b)
    assert code == EXIT_RUN_ERROR
    assert s["status_reason"] == "shard 1 failed: no session started"
    assert "merged run degraded: shard 1 failed: no session started" in stderr


REAL_PROFILE = (
    '[target]\nhost = "127.0.0.1"\nport = {port}\n[workload]\nsessions = 2\nmessages = 8\nseed = 5\n'
    '[output]\nprogress = "none"\nreport = false\n'
)


@pytest.fixture(scope="module")
def real_shards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two shards of one run, run for real against a loopback sink (their result folders)."""
    tmp = tmp_path_factory.mktemp("real-shards")
    with SinkThread(store_messages=False) as srv:
        profile = tmp / "p.toml"
        profile.write_text(REAL_PROFILE.format(port=srv.port))
        for i in range(2):
            code, _, err = invoke(["run", str(profile), "--shard", f"{i}/2", "-q", "--results-dir", str(tmp / f"s{i}")])
            assert code == EXIT_OK, err
    return [next(p for p in (tmp / f"s{i}").iterdir() if (p / "summary.json").is_file()) for i in range(2)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shard": {"index": 5, "count": 2, "seed": 1}}, "shard 5/2 is not a shard"),
        ({"shard": {"index": -1, "count": 2, "seed": 1}}, "shard -1/2 is not a shard"),
        ({"shard": {"index": "1", "count": 2, "seed": 1}}, "shard.index and shard.count must be integers"),
        ({"elapsed_s": "2.0"}, "elapsed_s is '2.0', not a number"),
        ({"counts": [1, 2]}, "not a run summary"),
        ({"replies": {"MAIL": 5}}, "replies.MAIL is int, not an object"),
        ({"schema_version": 2}, "schema_version 2, this smtpbench reads 1"),
    ],
)
def test_shard_summary_of_another_layout_is_refused_before_writing(
    real_shards: list[Path], tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    """A shard whose summary.json is not this version's layout (or names no shard of the split) is exit 2, one line."""
    other = tmp_path / "s1"
    shutil.copytree(real_shards[1], other)
    summary = json.loads((other / "summary.json").read_text()) | change
    (other / "summary.json").write_text(json.dumps(summary))
    code, _, stderr, _ = merge(tmp_path, real_shards[0], other)
    assert code == EXIT_USAGE and message in stderr, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not (tmp_path / "merged").exists()  # nothing written
    code, _, stderr, s = merge(tmp_path, *real_shards, out="good")  # the real shards themselves merge
    assert code == EXIT_OK and s["counts"]["messages_accepted"] == 8, stderr


def test_report_of_a_merged_run_lists_each_shards_generator_health(real_shards: list[Path], tmp_path: Path) -> None:
    """The merged generator object holds a list of per-shard objects: the report shows rows, not a Python repr."""
    code, _, stderr, s = merge(tmp_path, *real_shards)
    assert code == EXIT_OK, stderr
    assert [g["index"] for g in s["generator"]["shards"]] == [0, 1]
    code, _, stderr = invoke(["report", str(tmp_path / "merged")])
    assert code == EXIT_OK, stderr
    page = (tmp_path / "merged" / "report.html").read_text()
    section = page[page.index("<h3>generator health</h3>") :]
    section = section[: section.index("</table>")]
    assert "{" not in section and "[" not in section, section  # no dict or list repr in a cell
    for index in (0, 1):
        assert f"<td>shard {index} saturated</td>" in section, section
        assert f"<td>shard {index} cpu_percent_p50</td>" in section, section


def test_a_corrupt_payload_in_a_shards_log_leaves_nothing_behind(real_shards: list[Path], tmp_path: Path) -> None:
    """A payload spoilt in the middle of a shard's hlog is found only when merged: one line, exit 2, no OUT."""
    other = tmp_path / "s1"
    shutil.copytree(real_shards[1], other)
    hlog = other / "histograms.hlog"
    lines = hlog.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Tag=transaction,"))
    lines[first] = lines[first][:-30] + "A" * 30
    hlog.write_text("\n".join(lines) + "\n")
    code, _, stderr, _ = merge(tmp_path, real_shards[0], other)
    assert code == EXIT_USAGE, stderr
    assert f"unreadable shard results: {hlog}: line {first + 1}: not an interval histogram" in stderr, stderr
    assert stderr.count("\n") == 1
    assert not (tmp_path / "merged").exists()


def test_one_folder_named_twice_is_one_part(real_shards: list[Path], tmp_path: Path) -> None:
    """``merge s0/RUN s0 s1`` names shard 0's folder twice: it is merged once, and not called superseded."""
    code, _, stderr, s = merge(tmp_path, real_shards[0], real_shards[0].parent, real_shards[1])
    assert code == EXIT_OK, stderr
    assert "superseded" not in stderr, stderr
    assert [p["index"] for p in s["shards"]] == [0, 1] and s["counts"]["messages_accepted"] == 8
