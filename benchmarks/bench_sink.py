"""Throughput and CPU cost of smtpbench's own sink, driven by Postfix ``smtp-source`` or by smtpbench.

Starts ``smtpbench sink --port 0`` as a child process, then runs
``smtp-source -d -s 50 -l 1024 -m N`` against it (C, connection reuse,
nothing pipelined; the cheapest client there is, so the figures are the
sink's), or with ``--client smtpbench`` the closed-loop ``smtpbench run`` of
``bench_vs_smtp_source.py`` (50 sessions, pipelining: how the sink is used
as the default load target).  Per round: messages/s and the sink's CPU µs
per message (from ``/proc``).  Prints the medians over rounds.  Loopback only,
bounded in count and time.  Exit 0 on success, 2 on bad usage or a missing
Postfix, 3 when a run fails.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_vs_smtp_source import HOST, PAYLOAD, SESSIONS, BenchError, find_tool, run_child, run_smtpbench, stop

#: The sink must say where it listens within this many seconds.
START_TIMEOUT_S = 20.0


def start_sink() -> tuple[subprocess.Popen[str], int]:
    """Run ``smtpbench sink`` on a free 127.0.0.1 port; return the process and the port."""
    cmd = [sys.executable, "-m", "smtpbench", "sink", "--host", HOST, "--port", "0"]
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


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the medians; return the exit status."""
    p = argparse.ArgumentParser(description="smtpbench sink throughput under smtp-source or smtpbench (loopback).")
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--messages", type=int, default=20_000, help="messages per round (default 20,000)")
    p.add_argument("--client", choices=("smtp-source", "smtpbench"), default="smtp-source", help="the load client")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not 1 <= args.rounds <= 20 or not 1_000 <= args.messages <= 2_000_000:
        p.error("--rounds must be 1..20 and --messages 1000..2000000")
    rates: list[float] = []
    cpus: list[float] = []
    try:
        source = find_tool("smtp-source") if args.client == "smtp-source" else ""
        sink, port = start_sink()
        work = tempfile.TemporaryDirectory(prefix="smtpbench-bench-sink-")
        try:
            for rnd in range(1, args.rounds + 1):
                if args.client == "smtpbench":
                    sample = run_smtpbench(port, args.messages, True, sink.pid, rnd, Path(work.name))
                    rate, sink_cpu = sample.messages_per_s, sample.sink_cpu_s
                else:
                    cmd = [source, "-d", "-s", str(SESSIONS), "-l", str(PAYLOAD), "-m", str(args.messages)]
                    cmd += ["-M", "smtpbench.example", "-t", "user@example.test", f"{HOST}:{port}"]
                    wall, _, sink_cpu, out = run_child(cmd, sink.pid)
                    if out.strip():
                        raise BenchError(f"smtp-source reported: {out.strip().splitlines()[-1][:200]}")
                    rate = args.messages / wall
                rates.append(rate)
                cpus.append(sink_cpu / args.messages * 1e6)
                print(f"  round {rnd}: {rates[-1]:8.0f} msgs/s  sink {cpus[-1]:6.1f} µs CPU/msg", flush=True)
        finally:
            stop(sink, 10)
            work.cleanup()
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"median: {statistics.median(rates):.0f} msgs/s, sink {statistics.median(cpus):.1f} µs CPU/msg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
