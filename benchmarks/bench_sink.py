"""smtpbench's sink against Postfix ``smtp-sink``, side by side, under the same load client.

Starts Postfix ``smtp-sink`` and ``smtpbench sink`` (``--workers`` as given)
on free 127.0.0.1 ports, then, each round and in alternating order, runs the
same client against each: by default Postfix ``smtp-source -d -s 50 -l 1024
-m N -f a@example.test -t user@example.test`` (C, connection reuse, nothing
pipelined: the cheapest client there is, so the figures are the sinks'), or
with ``--client smtpbench`` the closed-loop ``smtpbench run`` of
``bench_vs_smtp_source.py`` (50 sessions, pipelining).  Per run: messages/s
and each sink's CPU µs per message, user and system (from ``/proc``, every
worker process included).  Prints the medians over rounds, the ratio
smtpbench sink / smtp-sink of messages/s (of the medians, and the median of
each round's own ratio), and the load average before and after (the machine may be shared: only the side-by-side ratio is
comparable).  Loopback only, bounded in count and time.  Exit 0 on success,
2 on bad usage or a missing Postfix, 3 when a run fails.  See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench_vs_smtp_source import (
    CLK_TCK,
    HOST,
    PAYLOAD,
    SESSIONS,
    BenchError,
    find_tool,
    free_port,
    reported,
    run_child,
    run_smtpbench,
    smtp_sink,
    stop,
    write_json,
)

#: The sink must say where it listens within this many seconds.
START_TIMEOUT_S = 20.0
SINKS = ("smtp-sink", "smtpbench")


@dataclass
class Run:
    """One client run against one sink."""

    sink: str
    round: int
    messages: int
    wall_s: float
    messages_per_s: float
    sink_user_s: float
    sink_sys_s: float

    @property
    def sink_us_per_message(self) -> float:
        """The sink's CPU (user + system, all its processes) per message, in µs."""
        return (self.sink_user_s + self.sink_sys_s) / self.messages * 1e6


def tree_cpu_s(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` and its live children (a sink's worker processes)."""
    pids = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            pids += [int(c) for c in children]
    except OSError:
        pass
    user = system = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        user += int(fields[11]) / CLK_TCK
        system += int(fields[12]) / CLK_TCK
    return user, system


def start_sink(workers: str) -> tuple[subprocess.Popen[str], int]:
    """Run ``smtpbench sink`` on a free 127.0.0.1 port; return the process and the port."""
    cmd = [sys.executable, "-m", "smtpbench", "sink", "--host", HOST, "--port", "0", "--quiet"]
    if workers != "1":
        cmd += ["--workers", workers]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("smtpbench-sink listening on "):
            return proc, int(line.strip().rpartition(":")[2])
    proc.kill()
    proc.wait()
    raise BenchError("smtpbench sink did not start")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg says them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def one_run(args: argparse.Namespace, sink: str, pid: int, port: int, rnd: int, work: Path) -> Run:
    """Drive one sink with the chosen client; raise BenchError unless every message got through."""
    user0, sys0 = tree_cpu_s(pid)
    if args.client == "smtpbench":
        sample = run_smtpbench(port, args.messages, True, pid, rnd, work)
        wall, rate = sample.wall_s, sample.messages_per_s
    else:
        cmd = [args.source, "-d", "-s", str(SESSIONS), "-l", str(PAYLOAD), "-m", str(args.messages)]
        cmd += ["-f", "a@example.test", "-M", "smtpbench.example", "-t", "user@example.test", f"{HOST}:{port}"]
        wall, _, _, out = run_child(cmd, pid)
        if out.strip():
            raise BenchError(f"smtp-source against {sink} reported: {out.strip().splitlines()[-1][:200]}")
        rate = args.messages / wall
    user1, sys1 = tree_cpu_s(pid)
    return Run(sink, rnd, args.messages, wall, rate, user1 - user0, sys1 - sys0)


def medians(runs: list[Run], sink: str) -> dict[str, float]:
    """Median messages/s and sink CPU of one sink's runs."""
    mine = [r for r in runs if r.sink == sink]
    return {
        "messages_per_s": statistics.median(r.messages_per_s for r in mine),
        "sink_us_per_message": statistics.median(r.sink_us_per_message for r in mine),
        "sink_user_us_per_message": statistics.median(r.sink_user_s / r.messages * 1e6 for r in mine),
        "sink_sys_us_per_message": statistics.median(r.sink_sys_s / r.messages * 1e6 for r in mine),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the medians and the ratio; return the exit status."""
    p = argparse.ArgumentParser(description="smtpbench sink vs Postfix smtp-sink under the same client (loopback).")
    p.add_argument("--rounds", type=int, default=5, help="rounds, each running both sinks (default 5)")
    p.add_argument("--messages", type=int, default=30_000, help="messages per run (default 30,000)")
    p.add_argument("--client", choices=("smtp-source", "smtpbench"), default="smtp-source", help="the load client")
    p.add_argument("--workers", default="1", help="smtpbench sink --workers (a number or auto; default 1)")
    p.add_argument("--json", metavar="FILE", help="also write every run and the medians to FILE")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not 1 <= args.rounds <= 20 or not 1_000 <= args.messages <= 2_000_000:
        p.error("--rounds must be 1..20 and --messages 1000..2000000")
    if args.workers != "auto" and not (args.workers.isdigit() and 1 <= int(args.workers) <= 64):
        p.error("--workers must be 1..64 or auto")
    runs: list[Run] = []
    load_before = load_average()
    with reported():
        args.source = find_tool("smtp-source")
        postfix_port = free_port()
        with tempfile.TemporaryDirectory(prefix="smtpbench-bench-sink-") as tmp, smtp_sink(postfix_port) as postfix:
            ours, port = start_sink(args.workers)
            try:
                print(
                    f"smtp-sink on {HOST}:{postfix_port}, smtpbench sink (workers {args.workers}) on {HOST}:{port};"
                    f" client {args.client}, {args.rounds} rounds x {args.messages} messages, {SESSIONS} sessions,"
                    f" {os.cpu_count()} CPUs, load average {load_before}",
                    flush=True,
                )
                targets = {"smtp-sink": (postfix.pid, postfix_port), "smtpbench": (ours.pid, port)}
                for rnd in range(1, args.rounds + 1):
                    # Alternate who goes first, so that drift (other load) hits both alike.
                    for sink in SINKS if rnd % 2 else SINKS[::-1]:
                        pid, sink_port = targets[sink]
                        run = one_run(args, sink, pid, sink_port, rnd, Path(tmp))
                        runs.append(run)
                        print(
                            f"  round {rnd} {sink:<10} {run.messages_per_s:>8.0f} msgs/s  sink"
                            f" {run.sink_us_per_message:6.1f} µs CPU/msg (user {run.sink_user_s / run.messages * 1e6:.1f},"
                            f" sys {run.sink_sys_s / run.messages * 1e6:.1f})  wall {run.wall_s:.1f}s",
                            flush=True,
                        )
            finally:
                stop(ours, 10)
    postfix_m, ours_m = medians(runs, "smtp-sink"), medians(runs, "smtpbench")
    ratio = ours_m["messages_per_s"] / postfix_m["messages_per_s"]
    # Each round runs the two back to back: the median of the rounds' own ratios shrugs off drift in other load.
    by_round = {(r.round, r.sink): r.messages_per_s for r in runs}
    round_ratios = [by_round[(n, "smtpbench")] / by_round[(n, "smtp-sink")] for n in range(1, args.rounds + 1)]
    round_ratio = statistics.median(round_ratios)
    load_after = load_average()
    print()
    for name, m in (("smtp-sink", postfix_m), ("smtpbench", ours_m)):
        print(
            f"median {name:<10} {m['messages_per_s']:>8.0f} msgs/s  sink {m['sink_us_per_message']:6.1f} µs CPU/msg"
            f" (user {m['sink_user_us_per_message']:.1f}, sys {m['sink_sys_us_per_message']:.1f})"
        )
    print(
        f"ratio smtpbench sink / smtp-sink: {ratio:.2f}x messages/s (of the medians), {round_ratio:.2f}x (median of"
        f" the rounds' ratios: {', '.join(f'{x:.2f}' for x in round_ratios)}); load average {load_before} -> {load_after}"
    )
    if args.json:
        doc = {
            "client": args.client,
            "workers": args.workers,
            "messages": args.messages,
            "load_average": [load_before, load_after],
            "runs": [asdict(r) | {"sink_us_per_message": r.sink_us_per_message} for r in runs],
            "medians": {"smtp-sink": postfix_m, "smtpbench": ours_m},
            "ratio": ratio,
            "round_ratios": round_ratios,
            "median_round_ratio": round_ratio,
        }
        write_json(args.json, doc, "%Y-%m-%d %H:%M")
    return 0


if __name__ == "__main__":
    sys.exit(main())
