"""``smtpbench run --workers N`` side by side for several N, on one Postfix ``smtp-sink``.

Starts ``smtp-sink`` (C, one process: it is not the limit for a few Python
workers) on a free 127.0.0.1 port, then runs in alternating rounds, for each N
of ``--workers`` (default ``1,2``), ``smtpbench run --workers N`` with a closed
profile of ``--sessions-per-worker`` sessions and ``--messages-per-worker``
messages per worker (so every run lasts about as long and each worker carries
the same load).  Messages/s come from the run's own summary.json (merged over
all workers), CPU from ``wait4`` of the smtpbench process tree.  The table
shows medians and each N's messages/s relative to N = 1 (speed-up) and to N
times it (efficiency: 100 % is linear), and the median over rounds of each
round's N-worker rate over the same round's one-worker rate (``paired``: the
steadier figure on a machine shared with other work).

``--client-cpus`` / ``--sink-cpus`` pin smtpbench and the sink to CPU sets
(``0-13``, ``14,15``: see benchmarks/scale.sh).  The load average before and
after is printed: the figures mean little on a machine busy with other work.
Loopback only, bounded in count and time.  Exit 0 on success, 2 on bad usage
or a missing Postfix, 3 when a run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import bench_vs_smtp_source as twin
from bench_vs_smtp_source import HOST, BenchError, find_tool, free_port, reported, run_child, smtp_sink


def cpu_set(text: str) -> set[int]:
    """``0-13,15`` -> {0, ..., 13, 15}; ValueError when malformed."""
    cpus: set[int] = set()
    for item in text.split(","):
        lo, _, hi = item.strip().partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    if not cpus:
        raise ValueError("empty CPU set")
    return cpus


#: Short sessions bind round-robin to these local addresses: one address holds only ~28,000 connections to one
#: port within a TIME_WAIT period, fewer than a few rounds of one-message sessions open.
SOURCES = "127.0.0.0/29"


def write_profile(path: Path, port: int, sessions: int, messages: int, per_session: int = 0) -> None:
    """bench_vs_smtp_source's profile (1 KiB, pipelining), with ``sessions`` and ``messages`` in all; connections
    are reused for every message (``per_session`` 0) or for ``per_session`` messages each, from :data:`SOURCES`."""
    twin.write_profile(path, port, messages, reuse=True)
    text = path.read_text(encoding="utf-8").replace(f"sessions = {twin.SESSIONS}\n", f"sessions = {sessions}\n")
    if per_session:
        text = text.replace("messages_per_session = 1000000000\n", f"messages_per_session = {per_session}\n")
        text = text.replace("helo = ", f'source_addresses = "{SOURCES}"\nhelo = ')
    path.write_text(text.replace('progress = "none"\n', 'progress = "none"\nreport = false\n'), encoding="utf-8")


_SPIN = "import time\nt = time.process_time()\nx = 0\nfor i in range(12_000_000):\n    x += i\nprint(time.process_time() - t)\n"


def parallel_capacity() -> tuple[int, float]:
    """(CPUs, how many CPUs' worth of work they do together): a pure-Python loop's CPU time alone over its CPU
    time when one copy runs on every CPU at once.  On a virtual machine whose vCPUs share physical cores (or
    whose host is busy) this is below the CPU count: every busy process is slower when all are busy.  It drifts
    from minute to minute on a shared host, so it is taken in every round, beside the runs it explains."""
    cpus = len(os.sched_getaffinity(0))

    def spin(copies: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-c", _SPIN], stdout=subprocess.PIPE) for _ in range(copies)]
        return statistics.median(float(p.communicate(timeout=120)[0]) for p in procs)

    alone = spin(1)
    together = spin(cpus)
    return cpus, cpus * alone / together


def startup_cpu_us(args: argparse.Namespace, port: int, sink_pid: int, work: Path) -> float:
    """CPU µs of a one-worker run's fixed cost (interpreter, imports, profile, message pool, results): the CPU of
    a run of 100 messages, left out of the steady per-message cost behind the CPU bound."""
    profile = work / "profile-startup.toml"
    write_profile(profile, port, args.sessions_per_worker, 100, args.per_session)
    cmd = twin.smtpbench_command(profile, work / "startup")
    return min(run_child(cmd, sink_pid)[1] for _ in range(2)) * 1e6


def one_run(args: argparse.Namespace, workers: int, port: int, sink_pid: int, work: Path, rnd: int) -> dict[str, float]:
    """One ``smtpbench run --workers N``: its messages/s (summary.json) and CPU µs per message (wait4)."""
    sessions, messages = args.sessions_per_worker * workers, args.messages_per_worker * workers
    profile = work / f"profile-{workers}.toml"
    write_profile(profile, port, sessions, messages, args.per_session)
    results = work / f"results-{workers}-{rnd}"
    cmd = [sys.executable, "-m", "smtpbench", "run", str(profile), "-q", "--workers", str(workers)]
    cmd += ["--results-dir", str(results)]
    if args.client_cpus:
        cmd = ["taskset", "-c", args.client_cpus, *cmd]
    wall, cpu, sink_cpu, out = run_child(cmd, sink_pid)
    summaries = sorted(results.glob("*/summary.json"))
    if not summaries:
        raise BenchError(f"smtpbench wrote no summary.json: {out.strip()[-300:]}")
    summary = json.loads(summaries[-1].read_text())
    accepted = summary["counts"]["messages_accepted"]
    if summary["status"] != "completed" or summary["counts"]["errors"] or accepted != messages:
        raise BenchError(f"run with {workers} workers not clean: {summary['status']}, {accepted} of {messages}")
    return {
        "workers": workers,
        "round": rnd,
        "messages": messages,
        "wall_s": wall,
        "messages_per_s": float(summary["throughput"]["messages_per_s"]),
        "cpu_us_per_message": cpu / messages * 1e6,
        "sink_cpu_share": sink_cpu / wall,
        "sink_cpu_us_per_message": sink_cpu / messages * 1e6,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options; bad values end with exit 2 (argparse)."""
    p = argparse.ArgumentParser(description="smtpbench --workers N side by side on one smtp-sink (loopback).")
    p.add_argument("--workers", default="1,2", help="worker counts to compare, comma-separated (default 1,2)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per worker count (default 3)")
    p.add_argument("--messages-per-worker", type=int, default=40_000, help="messages per worker (default 40,000)")
    p.add_argument("--sessions-per-worker", type=int, default=25, help="sessions per worker (default 25)")
    p.add_argument(
        "--per-session",
        type=int,
        default=0,
        help="messages per connection (default 0: one connection per session for the whole run)",
    )
    p.add_argument("--client-cpus", help="run smtpbench on these CPUs (taskset list, e.g. 0-13)")
    p.add_argument("--sink-cpus", help="run smtp-sink on these CPUs (e.g. 14,15)")
    p.add_argument("--json", metavar="FILE", help="also write every sample and the medians to FILE")
    args = p.parse_args(argv)
    try:
        args.counts = [int(x) for x in args.workers.split(",")]
        for text in (args.client_cpus, args.sink_cpus):
            if text:
                cpu_set(text)
    except ValueError as exc:
        p.error(f"bad list: {exc}")
    if not args.counts or not all(1 <= n <= 1024 for n in args.counts) or 1 not in args.counts:
        p.error("--workers: counts 1..1024, including 1 (the baseline)")
    if not 1 <= args.rounds <= 20 or not 100 <= args.messages_per_worker <= 2_000_000:
        p.error("--rounds must be 1..20, --messages-per-worker 100..2000000")
    if not 1 <= args.sessions_per_worker <= 1000 or not 0 <= args.per_session <= 1_000_000:
        p.error("--sessions-per-worker must be 1..1000, --per-session 0..1000000")
    return args


def report(
    samples: list[dict[str, float]], counts: list[int], capacity: tuple[int, float, float] | None = None
) -> tuple[str, dict[int, dict[str, float]]]:
    """The table of medians per worker count, with speed-up and efficiency against one worker."""
    medians = {}
    for n in counts:
        mine = [s for s in samples if s["workers"] == n]
        keys = ("messages", "messages_per_s", "cpu_us_per_message", "sink_cpu_share", "sink_cpu_us_per_message")
        medians[n] = {k: statistics.median(s[k] for s in mine) for k in keys}
    base = medians[1]["messages_per_s"]
    one = {s["round"]: s["messages_per_s"] for s in samples if s["workers"] == 1}
    head = f"{'workers':>7} {'msgs/s':>9} {'speed-up':>9} {'efficiency':>10} {'paired':>8} {'CPU µs/msg':>11}"
    lines = [head + f" {'sink CPU':>9}"]
    for n in counts:
        m = medians[n]
        m["speedup"] = m["messages_per_s"] / base
        m["efficiency"] = m["speedup"] / n
        # Each round's N-worker rate over the same round's one-worker rate: drift between rounds (other load
        # on a shared machine) cancels out better than in the ratio of medians.
        m["paired_speedup"] = statistics.median(s["messages_per_s"] / one[s["round"]] for s in samples
                                                if s["workers"] == n)  # fmt: skip
        lines.append(f"{n:>7} {m['messages_per_s']:>9.0f} {m['speedup']:>8.2f}x {m['efficiency'] * 100:>9.0f}%"
                     f" {m['paired_speedup']:>7.2f}x {m['cpu_us_per_message']:>11.1f}"
                     f" {m['sink_cpu_share'] * 100:>8.0f}%")  # fmt: skip
    if capacity is not None:
        # The most any number of client processes could deliver here if neither side's CPU per message grew:
        # every CPU busy (at the throughput all CPUs have together) with smtpbench or smtp-sink, each costing
        # what one worker's run cost it per message in its steady state (start-up left out).
        cpus, effective, fixed_us = capacity
        one = medians[1]
        client = one["cpu_us_per_message"] - fixed_us / one["messages"]
        if client <= 0:  # a run too short for its start-up: no steady cost to speak of
            lines.append(f"CPU bound: not measurable: {fixed_us / 1e3:.0f} ms of start-up outweigh "
                         f"{one['messages']:,.0f} messages (use more --messages-per-worker)")  # fmt: skip
            return "\n".join(lines), medians
        bound = effective / (client + one["sink_cpu_us_per_message"]) * 1e6
        one.update(cpu_bound_messages_per_s=bound, effective_cpus=effective, steady_cpu_us_per_message=client)
        lines.append(f"CPU bound: {effective:.2f} effective CPUs (median of the rounds; of {cpus}: a loop needs "
                     f"{cpus / effective:.2f}x its CPU time alone when all are busy) / ({client:.1f} µs smtpbench steady "
                     f"[{fixed_us / 1e3:.0f} ms start-up over {one['messages']:,.0f} messages left out] + "
                     f"{one['sink_cpu_us_per_message']:.1f} µs smtp-sink per message, one worker)")  # fmt: skip
        lines.append(f"         = {bound:.0f} msgs/s = {bound / base:.2f}x one worker: the most N workers can reach")
    return "\n".join(lines), medians


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table; return the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    samples: list[dict[str, float]] = []
    capacity: tuple[int, float, float] | None = None
    capacities: list[float] = []
    unpinned = not args.client_cpus and not args.sink_cpus
    load_before = os.getloadavg()
    with reported():
        find_tool("smtp-sink")
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="smtpbench-workers-") as tmp, smtp_sink(port) as sink:
            if args.sink_cpus:
                os.sched_setaffinity(sink.pid, cpu_set(args.sink_cpus))
            print(f"smtp-sink on {HOST}:{port}; workers {args.counts}, {args.rounds} rounds, "
                  f"{args.messages_per_worker} messages and {args.sessions_per_worker} sessions per worker, "
                  f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f}", flush=True)  # fmt: skip
            for rnd in range(1, args.rounds + 1):
                # Alternate the order, so that drift (other load) hits every count alike.
                for n in args.counts if rnd % 2 else list(reversed(args.counts)):
                    s = one_run(args, n, port, sink.pid, Path(tmp), rnd)
                    samples.append(s)
                    print(f"  round {rnd} workers {n:>3} {s['messages_per_s']:>8.0f} msgs/s"
                          f" {s['cpu_us_per_message']:>6.1f} µs CPU/msg  (wall {s['wall_s']:.1f}s)", flush=True)  # fmt: skip
                # Unpinned only: with --client-cpus/--sink-cpus each side has its own CPUs and the bound differs.
                if unpinned:
                    cpus, effective = parallel_capacity()
                    capacities.append(effective)
                    print(f"  round {rnd} parallel capacity {effective:.2f} of {cpus} CPUs", flush=True)
            if unpinned:
                capacity = (cpus, statistics.median(capacities), startup_cpu_us(args, port, sink.pid, Path(tmp)))
    load_after = os.getloadavg()
    table, medians = report(samples, args.counts, capacity)
    print()
    print(table)
    print(f"load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min)")
    if args.json:
        doc = {
            "load_average": {"before": load_before, "after": load_after},
            "samples": samples,
            "medians": medians,
        }
        twin.write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
