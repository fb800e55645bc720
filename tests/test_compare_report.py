"""``smtpbench compare`` and ``smtpbench report`` on result folders of real runs against the sink.

Three small open runs (3 s each) against our sink over loopback: two with
the same 10 ms end-of-data delay and one with 100 ms.  Compare must call the
slow one worse and fail its ``--fail-if``; the noise rule itself is proven on
synthetic logs whose interval spread is known exactly.  The report must
render in a real headless Chromium without console errors or network
requests (tests/browser.py).
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram
from typer.testing import CliRunner

from smtpbench.cli import _register_all, app
from smtpbench.load.execute import execute
from smtpbench.load.profile import load_profile
from smtpbench.metrics.hlog import HlogWriter
from smtpbench.metrics.recorder import Interval, new_histogram
from smtpbench.metrics.summary import build_summary
from smtpbench.sink.config import SinkConfig
from tests.browser import CHROMIUM, load_page, png_pixels
from tests.sinkutil import SinkThread

_register_all()

PROFILE = """
[target]
host = "127.0.0.1"
port = {port}
[workload]
model = "open"
rate = 60
duration = "3s"
grace = "3s"
seed = 7
[message]
size = "2KiB"
[output]
interval = "0.25s"
report = false
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def real_run(tmp: Path, port: int, name: str) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(PROFILE.format(port=port))
    outcome = execute(load_profile(str(path), (), results_dir=str(tmp / name)), quiet=True)
    assert outcome.status == "completed"
    return Path(outcome.results_path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("runs")
    out = {}
    with SinkThread(SinkConfig(delays={"data_end": 0.010})) as fast:
        out["base"] = real_run(tmp, fast.port, "base")
        out["same"] = real_run(tmp, fast.port, "same")
    with SinkThread(SinkConfig(delays={"data_end": 0.100})) as slow:
        out["slow"] = real_run(tmp, slow.port, "slow")
    return out


def compare_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = invoke("compare", "--json", *args)
    assert code in (0, 1), err
    return code, json.loads(out)


def row(doc: dict[str, Any], metric: str) -> dict[str, Any]:
    return next(r for r in doc["rows"] if r["metric"] == metric)


def test_compare_real_runs_flags_the_slow_one(runs: dict[str, Path]) -> None:
    code, doc = compare_json(str(runs["base"]), str(runs["same"]), str(runs["slow"]))
    assert code == 0  # no --fail-if
    assert [n["path"] for n in doc["new"]] == [str(runs["same"]), str(runs["slow"])]
    r = row(doc, "transaction.p50")
    same, slow = r["new"]
    assert 8_000 < r["base"] < 40_000
    assert slow["verdict"] == "worse" and 60_000 < slow["delta"] < 250_000, slow
    assert slow["delta_pct"] > 100
    # Each run's interval-to-interval spread was estimated from its hlog (12 quarter-second intervals).
    assert same["noise"] is not None and slow["noise"] is not None
    assert slow["delta"] > slow["noise"]
    assert row(doc, "throughput.messages_per_s")["new"][0]["value"] > 0
    assert any(r["metric"] == "corrected.transaction.p99" for r in doc["rows"])


def test_fail_if_exit_codes(runs: dict[str, Path]) -> None:
    base, same, slow = (str(runs[k]) for k in ("base", "same", "slow"))
    code, out, _ = invoke("compare", base, slow, "--fail-if", "transaction.p50 > +50%")
    assert code == 1 and "FAIL transaction.p50 > +50%" in out
    assert invoke("compare", base, slow, "--fail-if", "transaction.p50 > +30ms")[0] == 1
    assert invoke("compare", base, slow, "--fail-if", "transaction.p50 > +2s")[0] == 0
    # The same server twice does not fail a gate the 10x slower one fails (wide margin: a loaded CI machine).
    assert invoke("compare", base, same, "--fail-if", "transaction.p50 > +150%")[0] == 0
    assert invoke("compare", base, slow, "--fail-if", "transaction.p50 > +150%")[0] == 1
    # Several NEW folders: fails when any of them meets the condition.
    assert invoke("compare", base, same, slow, "--fail-if", "session.p50 > +50ms")[0] == 1
    assert invoke("compare", base, slow, "--fail-if", "throughput.messages_per_s < -50%")[0] == 0
    # An error kind neither run saw counts 0 on both sides: a valid condition that does not hold.
    assert invoke("compare", base, slow, "--fail-if", "errors.eaddrnotavail > +0")[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-if", "transactoin.p99 > +10%"], "did you mean transaction.p99?"),
        (["--fail-if", "transaction.p98 > +10%"], "unknown statistic 'p98'"),
        (["--fail-if", "transaction.p99 >> 10%"], "not a condition"),
        (["--fail-if", "transaction.p99 > 10"], "needs a unit"),
        (["--fail-if", "rset2.p99 > +1ms"], "phase 'rset2' not in run"),
        (["--fail-if", "errors.timout > +0"], "unknown error kind 'timout'"),
        (["--fail-if", "errors.timout > +0"], "did you mean errors.timeout?"),
    ],
)
def test_bad_conditions_exit_2_with_one_line(runs: dict[str, Path], args: list[str], message: str) -> None:
    code, out, err = invoke("compare", str(runs["base"]), str(runs["same"]), *args)
    assert code == 2, out + err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_folder_exits_2(runs: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = invoke("compare", str(runs["base"]), str(tmp_path / "nope"))
    assert code == 2 and "no such results folder" in err
    code, _, err = invoke("compare", str(runs["base"]), str(tmp_path))
    assert code == 2 and "not a results folder" in err
    assert invoke("report", str(tmp_path / "nope"))[0] == 2
    unwritable = tmp_path / "no-such-dir" / "r.html"
    code, _, err = invoke("report", str(runs["base"]), "-o", str(unwritable))
    assert code == 2 and err == f"smtpbench: error: cannot write the report {unwritable}: No such file or directory\n"


def test_cut_short_and_corrupt_logs(runs: dict[str, Path], tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    shutil.copytree(runs["same"], killed)
    hlog = killed / "histograms.hlog"
    text = hlog.read_text()
    hlog.write_text(text[: len(text) - 40])  # a run killed mid-line: the last payload is cut short
    assert invoke("compare", str(runs["base"]), str(killed))[0] == 0
    assert invoke("report", str(killed))[0] == 0
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Tag=transaction,"))
    lines[first] = lines[first][:-30] + "A" * 30  # a corrupt payload in the middle of the log
    hlog.write_text("\n".join(lines) + "\n")
    for args in (["compare", str(runs["base"]), str(killed)], ["report", str(killed)]):
        code, _, err = invoke(*args)
        assert code == 2 and "histograms.hlog: line" in err and err.count("\n") == 1, err


def test_plain_text_when_not_a_terminal(runs: dict[str, Path]) -> None:
    code, out, _ = invoke("compare", str(runs["base"]), str(runs["slow"]))
    assert code == 0
    assert "\x1b[" not in out  # no colour codes in a pipe
    line = next(x for x in out.splitlines() if x.startswith("transaction.p50 "))
    assert "WORSE" in line and "%" in line
    assert "within noise" in out  # the legend explains the mark


# --------------------------------------------------------------- noise rule


def synthetic_run(folder: Path, per_interval_us: list[int], n: int = 50) -> Path:
    """A results folder whose phase ``x`` holds ``n`` values of exactly ``per_interval_us[i]`` in interval ``i``."""
    folder.mkdir(parents=True)
    totals = new_histogram()
    with open(folder / "histograms.hlog", "w") as f:
        w = HlogWriter(f, 1000.0)
        for i, v in enumerate(per_interval_us):
            h = new_histogram()
            h.record_value(v, n)
            totals.add(h)
            w.write([Interval("x", 1000.0 + i, 1001.0 + i, h)])
    summary = build_summary(
        run_id=folder.name,
        status="completed",
        started_at="2026-12-02T00:00:00+00:00",
        elapsed_s=len(per_interval_us),
        histograms={"x": totals},
        counters={"counts": {"messages_accepted": n * len(per_interval_us)}},
        model="closed",
        target="127.0.0.1:25",
    )
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_noise_rule_on_known_spread(tmp_path: Path) -> None:
    # Base alternates 10 ms / 12 ms per interval: median 11 ms, every deviation 1 ms, spread 1.4826 ms.
    base = synthetic_run(tmp_path / "base", [10_000, 12_000] * 4)
    near = synthetic_run(tmp_path / "near", [11_000, 13_000] * 4)  # +1.0 ms: inside the spread
    far = synthetic_run(tmp_path / "far", [11_600, 13_600] * 4)  # +1.6 ms: just outside it
    steady = synthetic_run(tmp_path / "steady", [10_000] * 8)
    _, doc = compare_json(str(base), str(near), str(far))
    near_c, far_c = row(doc, "x.p50")["new"]
    assert near_c["noise"] == pytest.approx(1482.6, abs=8)
    assert near_c["verdict"] == "noise" and near_c["within_noise"]
    assert far_c["verdict"] == "worse" and not far_c["within_noise"]
    # Noise is the larger spread of the two runs: against a steady base the near run's own spread counts.
    _, doc = compare_json(str(steady), str(near))
    assert row(doc, "x.p50")["new"][0]["verdict"] == "noise"
    # A condition that holds within noise does not fail, unless --ignore-noise.
    code, out, _ = invoke("compare", str(base), str(near), "--fail-if", "x.p50 > +1%")
    assert code == 0 and "within noise" in out
    assert invoke("compare", str(base), str(near), "--fail-if", "x.p50 > +1%", "--ignore-noise")[0] == 1
    assert invoke("compare", str(base), str(far), "--fail-if", "x.p50 > +1%")[0] == 1
    # One interval caught in a stall (300 ms) barely widens the spread (a standard deviation would be ~96 ms).
    stalled = synthetic_run(tmp_path / "stalled", [10_000, 12_000] * 4 + [300_000])
    _, doc = compare_json(str(stalled), str(steady))
    assert row(doc, "x.p50")["new"][0]["noise"] < 5_000
    # Too few intervals: no estimate, so a change is a change.
    short = synthetic_run(tmp_path / "short", [10_000, 12_000])
    short2 = synthetic_run(tmp_path / "short2", [11_000, 13_000])
    _, doc = compare_json(str(short), str(short2))
    assert row(doc, "x.p50")["new"][0]["noise"] is None
    assert row(doc, "x.p50")["new"][0]["verdict"] == "worse"


# --------------------------------------------------------------- report

RESOURCE = re.compile(
    r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""", re.I
)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 2}, "schema_version 2, this smtpbench reads 1"),
        ({"thresholds": {"transaction.p99": "< 1s"}}, "thresholds is not a list of objects"),
        ({"unfinished": ["banner"]}, "unfinished is list, not an object"),
        ({"throughput": ["messages_per_s"]}, "throughput is list, not an object"),
        ({"errors": {"timeout": "3"}}, "errors.timeout is '3', not a number"),
        ({"phases": {"connect": [1, 2]}}, "phases.connect is list, not an object"),
    ],
)
def test_summary_of_another_layout_is_one_line(
    runs: dict[str, Path], tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    """A summary.json of another version (or edited by hand) is one error line, exit 2, never a traceback."""
    other = tmp_path / "other"
    shutil.copytree(runs["same"], other)
    summary = json.loads((other / "summary.json").read_text()) | change
    (other / "summary.json").write_text(json.dumps(summary))
    for args in (["compare", str(runs["base"]), str(other)], ["report", str(other)]):
        code, _, err = invoke(*args)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"smtpbench: error: {other}: unreadable results: {message}"), err


def with_new_keys(src: Path, dst: Path) -> Path:
    """A copy of ``src`` whose summary carries the keys other features add (thresholds, unfinished, generator)."""
    shutil.copytree(src, dst)
    s = json.loads((dst / "summary.json").read_text())
    s["thresholds"] = [
        {"metric": "transaction.p99", "condition": "< 250ms", "value": 12.5, "ok": True},
        {"metric": "errors.rate", "condition": "< 1%", "value": 3.0, "ok": False},
    ]
    s["unfinished"] = {"banner": 3}
    s["counts"]["sessions_unfinished"] = 3
    s["generator"] = {
        "cpu_percent_p50": 41.0,
        "cpu_percent_max": 97.0,
        "loop_lag_p99_us": 900,
        "saturated": True,
        "reason": "CPU >= 90% of a core",
    }
    (dst / "summary.json").write_text(json.dumps(s))
    return dst


def test_report_renders_every_phase(runs: dict[str, Path], tmp_path: Path) -> None:
    run = with_new_keys(runs["base"], tmp_path / "run")
    code, out, err = invoke("report", str(run))
    assert code == 0, err
    html = (run / "report.html").read_text()
    assert out.strip() == f"report: {run / 'report.html'}"
    tags = {
        line.split(",", 1)[0][4:]
        for line in (run / "histograms.hlog").read_text().splitlines()
        if line.startswith("Tag=")
    }
    assert {"transaction", "corrected.transaction", "schedule_lag"} <= tags
    for tag in tags:
        assert f'data-phase="{tag}"' in html
    assert not RESOURCE.search(html) and "<script" not in html and "<link" not in html
    assert "✓" in html and "✗" in html and "errors.rate" in html
    assert "generator was saturated" in html and "unfinished sessions" in html
    assert "percentile spectrum" in html and "corrected (from intended start)" in html


def test_report_of_several_runs_and_old_folders(runs: dict[str, Path], tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(runs["same"], old)
    (old / "timeline.jsonl").unlink()  # folders of earlier versions have no timeline, no new keys
    (old / "profile.toml").unlink()
    out_file = tmp_path / "both.html"
    code, _, err = invoke("report", str(runs["base"]), str(old), str(runs["slow"]), "-o", str(out_file))
    assert code == 0, err
    html = out_file.read_text()
    assert "run 1: " in html and "run 3: " in html and "no data" in html  # the old run has no timeline to plot
    assert invoke("compare", str(old), str(runs["base"]))[0] == 0


def test_run_writes_report_unless_told_not_to(tmp_path: Path) -> None:
    with SinkThread(SinkConfig()) as sink:
        path = tmp_path / "p.toml"
        path.write_text(PROFILE.format(port=sink.port).replace("report = false", "") + "")
        for extra, expected in (([], True), (["--no-report"], False)):
            results = tmp_path / f"r{len(extra)}"
            args = ["run", str(path), "--quiet", "--duration", "0.5s", "--results-dir", str(results), *extra]
            code, _, err = invoke(*args)
            assert code == 0, err
            (folder,) = results.iterdir()
            assert (folder / "report.html").exists() is expected


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
def test_report_in_headless_chromium(runs: dict[str, Path], tmp_path: Path) -> None:
    run = with_new_keys(runs["base"], tmp_path / "run")
    assert invoke("report", str(run), str(runs["slow"]), "-o", str(tmp_path / "r.html"))[0] == 0
    page = tmp_path / "r.html"
    result = load_page(page, "[...document.querySelectorAll('[data-phase]')].map(e => e.dataset.phase)")
    assert result.errors == []
    assert result.requests == [page.resolve().as_uri()]  # the page itself, nothing else
    tags = {
        line.split(",", 1)[0][4:]
        for line in (run / "histograms.hlog").read_text().splitlines()
        if line.startswith("Tag=")
    }
    assert tags <= set(result.value)
    width, bpp, rows = png_pixels(result.png)
    pixels = [row[i : i + 3] for row in rows for i in range(0, width * bpp, bpp)]
    ink = sum(1 for p in pixels if min(p) < 200)
    blue = sum(1 for p in pixels if p[2] > p[0] + 60)  # the first run's colour (#0072B2) drawn in the charts
    assert ink > 0.02 * len(pixels), (ink, len(pixels))
    assert blue > 50, blue


def _random_histograms(rng: random.Random, count: int, most_values: int) -> Iterator[HdrHistogram]:
    """``count`` histograms of log-normal values over the whole range, with counts from 1 to 70,000."""
    for _ in range(count):
        h = new_histogram()
        for _ in range(rng.randint(1, most_values)):
            v = int(rng.lognormvariate(rng.uniform(0, 16), rng.uniform(0.1, 3)))
            h.record_value(min(v, 3_600_000_000), rng.choice([1, 1, 2, 300, 70_000]))
        yield h


def test_values_at_percentiles_equal_hdrh() -> None:
    """The report's fast percentile walk gives exactly hdrh's ``get_value_at_percentile``."""
    from smtpbench.metrics.hgrm import values_at_percentiles

    rng = random.Random(5)  # fixed: the same 60 histograms every run
    for h in _random_histograms(rng, 60, 500):
        decoded = new_histogram().decode(h.encode())
        ps = (0.001, 12.5, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0, rng.uniform(0.01, 100))
        for hist in (h, decoded):
            assert values_at_percentiles(hist, ps) == [hist.get_value_at_percentile(p) for p in ps]
    assert values_at_percentiles(new_histogram(), (50.0,)) == [0]


def test_hgrm_percentile_steps_equal_hdrh_iterator() -> None:
    """The .hgrm rows (non-empty buckets only) are exactly the steps of hdrh's own percentile iterator."""
    from smtpbench.metrics.hgrm import percentile_steps

    def reference(h: HdrHistogram, ticks: int) -> list[tuple[int, float, int]]:
        it = h.get_percentile_iterator(ticks)
        return [(s.value_iterated_to, s.percentile_level_iterated_to, s.total_count_to_this_value) for s in it]

    rng = random.Random(3)  # fixed: the same histograms every run
    single = new_histogram()
    single.record_value(0)
    edges = new_histogram()
    for v in (1, 2047, 2048, 2049, 3_600_000_000):
        edges.record_value(v, 3)
    for h in [single, edges, *_random_histograms(rng, 60, 300)]:
        for ticks in (1, 3, 5):
            assert percentile_steps(h, ticks) == reference(h, ticks)


def test_mean_stddev_and_phase_stats_equal_hdrh() -> None:
    """Results' mean, deviation and percentiles (non-empty buckets picked in C) are hdrh's own figures."""
    from smtpbench.metrics.hgrm import mean_and_stddev
    from smtpbench.metrics.summary import phase_stats

    for h in _random_histograms(random.Random(11), 40, 300):  # fixed: the same 40 histograms every run
        mean, std = mean_and_stddev(h)
        assert mean == pytest.approx(h.get_mean_value(), rel=1e-12) and std == pytest.approx(h.get_stddev(), rel=1e-9)
        pct = h.get_percentile_to_value_dict([50.0, 90.0, 99.0, 99.9])
        stats = phase_stats(h)
        assert [stats[k] for k in ("p50_us", "p90_us", "p99_us", "p999_us")] == [
            pct[50.0],
            pct[90.0],
            pct[99.0],
            pct[99.9],
        ]
    assert mean_and_stddev(new_histogram()) == (0.0, 0.0) and phase_stats(new_histogram()) == {"count": 0}
