"""Soak: the memory of ``smtpbench run`` and of ``smtpbench sink`` stays flat over a long steady run.

Starts ``smtpbench sink`` (its own process) on a free 127.0.0.1 port, then one
``smtpbench run`` of a generated open-model profile against it: ``--rate``
messages per second (default 400) as ``--rate / --per-session`` new sessions
per second (Poisson arrivals), each delivering ``--per-session`` messages
(default 10) of ``--size`` (default 4 KiB) over one connection, for
``--duration`` seconds (default 600; ``--quick``: 60).  Sessions bind
round-robin to the host addresses of ``127.0.0.0/29``, so the TIME_WAIT
states of closed connections never run out of local ports.

Every ``--interval`` seconds (default 10; ``--quick``: 5) the script reads
both processes' RSS (``VmRSS`` in ``/proc/PID/status``), the size of the
run's ``histograms.hlog`` and the messages accepted so far (the run's
``timeline.jsonl``) and the machine's 1-minute load average.  Per process it
reports the RSS at the first sample, after the warm-up, at the last sample and
its peak, and over the samples of the load phase after the warm-up
(``--warmup`` s, default 60; ``--quick``: 15) the least-squares slope of RSS
against time in KiB/min with its standard error, the median absolute
deviation of the residuals (the samples' noise, KiB), and the slope per
message (octets per message accepted).

Verdict per process, on the samples after the warm-up (the window):

* **growing** when the slope over the window's last half exceeds both twice
  its standard error (not noise) and ``--floor`` octets per message accepted
  (default 1): memory still rises at the end, the mark of something kept per
  message;
* else **rose** when the median RSS of the last half is more than
  ``--max-rise`` MiB (default 5) above that of the first half: it levelled
  off, but only after a large climb (garbage that waits for a rare collection);
* else **flat**.

The whole window's slope is reported too, but does not decide: RSS that
settles after a few minutes (a sawtooth that stops, one late arena) gives it
a significant value with no growth left.  The run must also be clean: status
``completed``, no errors, at most 0.1 % of the arrivals dropped, its
``messages_accepted`` equal to the sink's, and its ``histograms.hlog`` growing
during the load phase (written incrementally, not at the end).

Loopback only; bounded: the run is killed ``--duration`` + 120 s after its
start.  ``--json FILE`` keeps every sample and the figures; ``--analyse FILE``
judges such a file again without running anything.  Exit 0 when both
processes are flat and the run is clean, 1 when one is growing or rose, 2 on
bad usage, 3 when the run fails or is not clean.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_sessions import rss_kib

from smtpbench.metrics.timeline import read_timeline
from smtpbench.sink.embedded import EmbeddedSink

HOST = "127.0.0.1"
SOURCES = "127.0.0.0/29"
#: How long past ``--duration`` the run may take (grace, results, report) before it is killed.
RUN_MARGIN_S = 120.0
#: Share of the intended arrivals that may be dropped (started too late) in a clean run.
MAX_DROPPED = 0.001
#: Verdict: the slope must exceed this many standard errors to count as growth (about 95 %).
SIGMAS = 2.0


class SoakSink(EmbeddedSink):
    """The embedded sink, with the process id the benchmark samples."""

    @property
    def pid(self) -> int:
        """The sink process's id (the sink must be running)."""
        assert self._proc is not None
        return self._proc.pid


@dataclass
class Sample:
    """One sampling moment: seconds since the run started, both RSS (KiB), hlog octets, messages accepted, load."""

    t: float
    run_kib: int
    sink_kib: int
    hlog_octets: int
    accepted: int
    load1: float


@dataclass
class Trend:
    """One process's RSS over the load phase after the warm-up (the window): its lines and the verdict."""

    process: str
    first_kib: int  # at the first sample
    warm_kib: int  # at the first sample of the window (after the warm-up)
    last_kib: int
    peak_kib: int
    samples: int  # in the window
    slope_kib_min: float  # least squares over the window
    stderr_kib_min: float
    mad_kib: float  # median absolute deviation of the window's residuals: the samples' noise
    octets_per_message: float  # the slope per message accepted
    late_slope_kib_min: float  # least squares over the last half of the window
    late_stderr_kib_min: float
    late_octets_per_message: float
    rise_kib: int  # median of the window's last half - median of its first half
    verdict: str  # flat | growing | rose
    why: str


@dataclass
class Result:
    """Everything ``--json`` writes."""

    settings: dict[str, Any]
    machine: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    trends: list[Trend] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)
    sink: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def fit(ts: list[float], ys: list[float]) -> tuple[float, float, list[float]]:
    """Least-squares line ``y = a + b t``: return (b, standard error of b, residuals).

    Needs at least 3 points with distinct times (the standard error has n - 2 degrees of freedom).
    """
    n = len(ts)
    if n < 3:
        raise ValueError("at least 3 samples are needed for a slope and its standard error")
    t_mean, y_mean = statistics.fmean(ts), statistics.fmean(ys)
    sxx = sum((t - t_mean) ** 2 for t in ts)
    if sxx == 0:
        raise ValueError("the samples' times are all equal")
    b = sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys, strict=True)) / sxx
    a = y_mean - b * t_mean
    residuals = [y - (a + b * t) for t, y in zip(ts, ys, strict=True)]
    se = math.sqrt(sum(r * r for r in residuals) / (n - 2) / sxx)
    return b, se, residuals


def slope_per_message(window: list[Sample], key: str) -> tuple[float, float, list[float], float]:
    """Least squares of RSS (KiB) on minutes over ``window``: slope, its standard error, residuals, octets/message."""
    ts = [s.t / 60 for s in window]
    slope, se, residuals = fit(ts, [float(getattr(s, key)) for s in window])
    per_min = (window[-1].accepted - window[0].accepted) / (ts[-1] - ts[0])
    return slope, se, residuals, slope * 1024 / per_min if per_min > 0 else math.inf


def trend(process: str, samples: list[Sample], window: list[Sample], floor_octets: float, max_rise_kib: int) -> Trend:
    """The figures and the verdict for one process's RSS (rule: module docstring and benchmarks/README.md)."""
    key = "run_kib" if process == "run" else "sink_kib"
    slope, se, residuals, per_message = slope_per_message(window, key)
    mad = statistics.median(abs(r - statistics.median(residuals)) for r in residuals)
    late = window[len(window) // 2 :]
    late_slope, late_se, _, late_per_message = slope_per_message(late, key)
    rss = [getattr(s, key) for s in samples]
    warm = getattr(window[0], key)
    # Medians, not single samples: the generator's RSS saws by ~2 MiB (a buffer freed and taken again).
    early = window[: len(window) // 2]
    rise = int(statistics.median(getattr(s, key) for s in late) - statistics.median(getattr(s, key) for s in early))
    if late_slope > SIGMAS * late_se and late_per_message > floor_octets:
        verdict = "growing"
        why = f"still growing over the last half: > {SIGMAS:g} standard errors and > {floor_octets:g} octets/message"
    elif rise > max_rise_kib:
        verdict = "rose"
        why = f"level over the last half, but {rise / 1024:.1f} MiB above the first half"
    else:
        verdict = "flat"
        why = f"last half within noise or below {floor_octets:g} octets/message; rise {rise / 1024:+.2f} MiB"
    return Trend(
        process, rss[0], warm, rss[-1], max(rss), len(window), slope, se, mad, per_message,
        late_slope, late_se, late_per_message, rise, verdict, why,
    )  # fmt: skip


def profile_text(args: argparse.Namespace, port: int, results: Path) -> str:
    """The generated open-model profile of the soak run."""
    return (
        f'[target]\nhost = "{HOST}"\nport = {port}\nsource_addresses = "{SOURCES}"\n'
        f'[workload]\nmodel = "open"\nrate = {args.rate / args.per_session:g}\narrival = "poisson"\n'
        f'messages_per_session = {args.per_session}\nduration = "{args.duration:g}s"\ngrace = "30s"\nseed = 1\n'
        f'[message]\nsize = "{args.size}"\n'
        f'[output]\nresults_dir = "{results}"\nprogress = "none"\nreport = false\n'
    )


def accepted_so_far(run_dir: Path | None) -> int:
    """Messages accepted so far according to the run's ``timeline.jsonl`` (0 before it exists)."""
    if run_dir is None:
        return 0
    return sum(
        int(line.get("counts", {}).get("messages_accepted", 0)) for line in read_timeline(run_dir / "timeline.jsonl")
    )


def soak(args: argparse.Namespace, result: Result, work: Path) -> None:
    """Start the sink and the run, sample both every ``--interval`` s until the run ends, collect their counts."""
    results = work / "results"
    profile = work / "soak.toml"
    sink = SoakSink()
    with sink as (_, port):
        profile.write_text(profile_text(args, port, results))
        cmd = [sys.executable, "-m", "smtpbench", "run", str(profile), "--quiet"]
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = start + args.duration + RUN_MARGIN_S
        run_dir: Path | None = None
        try:
            next_at = start  # no sample at 0 s: the interpreter is still starting
            while True:
                next_at += args.interval
                while proc.poll() is None and time.monotonic() < min(next_at, deadline):
                    time.sleep(min(0.2, max(next_at - time.monotonic(), 0.0)))
                if proc.poll() is not None or time.monotonic() >= deadline:
                    break
                run_dir = run_dir or next((p.parent for p in results.glob("*/histograms.hlog")), None)
                hlog = run_dir / "histograms.hlog" if run_dir else None
                s = Sample(
                    t=round(time.monotonic() - start, 2),
                    run_kib=rss_kib(proc.pid),
                    sink_kib=rss_kib(sink.pid),
                    hlog_octets=hlog.stat().st_size if hlog and hlog.exists() else 0,
                    accepted=accepted_so_far(run_dir),
                    load1=os.getloadavg()[0],
                )
                if s.run_kib and s.t <= args.duration:  # the load phase only (not the grace, not the results)
                    result.samples.append(s)
                    print(
                        f"  t={s.t:6.1f}s  run {s.run_kib / 1024:7.2f} MiB  sink {s.sink_kib / 1024:7.2f} MiB"
                        f"  hlog {s.hlog_octets / 1024:8.1f} KiB  accepted {s.accepted:>9,}",
                        flush=True,
                    )
            out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1.0))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    summaries = list(results.glob("*/summary.json"))
    result.run = {"exit": proc.returncode, "stderr": err.strip()[-500:], "stdout_tail": out.strip()[-500:]}
    if summaries:
        summary = json.loads(summaries[0].read_text())
        result.run.update(
            status=summary.get("status"),
            counts=summary.get("counts", {}),
            generator=summary.get("generator", {}),
            messages_per_s=summary.get("throughput", {}).get("messages_per_s"),
        )
    result.sink = sink.stats or {"exit": sink.returncode}


def check_clean(result: Result) -> None:
    """Append to ``result.problems`` whatever makes the run not clean (see the module docstring)."""
    run, problems = result.run, result.problems
    counts = run.get("counts", {})
    if run.get("status") != "completed":
        problems.append(f"run status {run.get('status')!r} (exit {run.get('exit')}): {run.get('stderr', '')[:200]}")
    for key in ("errors", "sessions_failed", "sessions_unfinished"):
        if counts.get(key):
            problems.append(f"run counts {key} = {counts[key]}")
    # A loaded machine may start an arrival or two late enough to miss the end; more means the rate was not held.
    if counts.get("arrivals_dropped", 0) > MAX_DROPPED * counts.get("arrivals_intended", 0):
        problems.append(f"{counts['arrivals_dropped']} of {counts.get('arrivals_intended')} arrivals dropped")
    if counts.get("messages_accepted") != result.sink.get("messages_accepted"):
        problems.append(
            f"run accepted {counts.get('messages_accepted')} messages, the sink {result.sink.get('messages_accepted')}"
        )
    load = [s for s in result.samples if s.t >= result.settings["warmup"]]
    if len(load) < 2 or load[-1].hlog_octets <= load[0].hlog_octets:
        problems.append("histograms.hlog did not grow during the load phase")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options; bad values end with exit 2 (argparse)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="60 s, samples every 5 s, 15 s warm-up")
    p.add_argument("--duration", type=float, help="seconds of load (default 600)")
    p.add_argument("--rate", type=float, default=400.0, help="messages per second (default 400)")
    p.add_argument("--per-session", type=int, default=10, help="messages per connection (default 10)")
    p.add_argument("--size", default="4KiB", help="message size (default 4KiB)")
    p.add_argument("--interval", type=float, help="seconds between RSS samples (default 10)")
    p.add_argument("--warmup", type=float, help="seconds left out of the slope (default 60)")
    p.add_argument("--floor", type=float, default=1.0, help="octets/message below which growth is flat (default 1)")
    p.add_argument("--max-rise", type=float, default=5.0, help="MiB a level RSS may have risen (default 5)")
    p.add_argument("--json", metavar="FILE", help="write every sample and the figures to FILE")
    p.add_argument("--analyse", metavar="FILE", help="judge the samples of an earlier --json FILE again; run nothing")
    args = p.parse_args(argv)
    if args.analyse:
        try:
            args.saved = json.loads(Path(args.analyse).read_text())
            for key in ("duration", "rate", "per_session", "size", "interval"):
                setattr(args, key, args.saved["settings"][key])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            p.error(f"--analyse {args.analyse}: not a bench_soak.py --json file ({exc})")
    args.duration = args.duration or (60.0 if args.quick else 600.0)
    args.interval = args.interval or (5.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (15.0 if args.quick else 60.0)
    if not 10 <= args.duration <= 86_400:
        p.error("--duration must be 10..86400 seconds")
    if not 0.5 <= args.interval <= args.duration / 4:
        p.error("--interval must be 0.5 s .. a quarter of --duration")
    if not 0 <= args.warmup <= args.duration - 6 * args.interval:
        p.error("--warmup must leave at least 6 samples of the load phase")
    if not 1 <= args.rate <= 100_000 or not 1 <= args.per_session <= 10_000:
        p.error("--rate must be 1..100000 and --per-session 1..10000")
    if args.floor < 0 or args.max_rise < 0:
        p.error("--floor and --max-rise must be >= 0")
    return args


def measure(args: argparse.Namespace) -> Result:
    """Soak once; the samples and both processes' final counts."""
    settings = {
        k: getattr(args, k)
        for k in ("duration", "rate", "per_session", "size", "interval", "warmup", "floor", "max_rise")
    }
    machine = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
    }
    result = Result(settings, machine)
    print(
        f"soak: {args.rate:g} msgs/s ({args.rate / args.per_session:g} sessions/s x {args.per_session}),"
        f" {args.size}, {args.duration:g} s, RSS every {args.interval:g} s; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="smtpbench-soak-") as tmp:
        soak(args, result, Path(tmp))
    machine["loadavg_end"] = os.getloadavg()
    return result


def saved(args: argparse.Namespace) -> Result:
    """The samples and counts of an earlier ``--json`` file, with this command line's verdict settings."""
    data = args.saved
    settings = dict(data["settings"], warmup=args.warmup, floor=args.floor, max_rise=args.max_rise)
    samples = [Sample(**{"load1": 0.0, **s}) for s in data["samples"]]
    return Result(settings, data["machine"], samples, [], data["run"], data["sink"])


def main(argv: list[str] | None = None) -> int:
    """Soak (or read an earlier soak), judge, print the figures; the exit code is the verdict."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    result = saved(args) if args.analyse else measure(args)
    check_clean(result)
    window = [s for s in result.samples if s.t >= args.warmup]
    if len(window) >= 6:
        result.trends = [
            trend(name, result.samples, window, args.floor, int(args.max_rise * 1024)) for name in ("run", "sink")
        ]
    else:
        result.problems.append(f"only {len(window)} samples after the warm-up")
    run = result.run
    print(
        f"run: status {run.get('status')}, {run.get('counts', {}).get('messages_accepted', 0):,} messages accepted"
        f" ({run.get('messages_per_s') or 0:.0f}/s), sink accepted {result.sink.get('messages_accepted', 0):,};"
        f" arrivals dropped {run.get('counts', {}).get('arrivals_dropped', 0)};"
        f" generator saturated: {run.get('generator', {}).get('saturated')}"
    )
    for tr in result.trends:
        print(
            f"{tr.process:>4}: RSS {tr.first_kib / 1024:.2f} MiB at {result.samples[0].t:.0f} s,"
            f" {tr.warm_kib / 1024:.2f} after the warm-up, {tr.last_kib / 1024:.2f} at the end"
            f" (peak {tr.peak_kib / 1024:.2f}); slope over {tr.samples}"
            f" samples {tr.slope_kib_min:+.1f} ± {tr.stderr_kib_min:.1f} KiB/min ({tr.octets_per_message:+.2f}"
            f" octets/message; noise: MAD {tr.mad_kib:.0f} KiB), last half {tr.late_slope_kib_min:+.1f}"
            f" ± {tr.late_stderr_kib_min:.1f} KiB/min ({tr.late_octets_per_message:+.2f} octets/message):"
            f" {tr.verdict.upper()} ({tr.why})"
        )
    loads = [s.load1 for s in result.samples if s.load1] or [0.0]
    print(f"load average (1 min) over the samples: mean {statistics.fmean(loads):.2f}, max {max(loads):.2f}")
    for problem in result.problems:
        print(f"NOT CLEAN: {problem}")
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=1) + "\n")
    if result.problems:
        return 3
    return 1 if any(tr.verdict != "flat" for tr in result.trends) else 0


if __name__ == "__main__":
    sys.exit(main())
