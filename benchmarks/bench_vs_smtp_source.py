"""smtpbench against Postfix ``smtp-source``, side by side, on one Postfix ``smtp-sink``.

Starts ``smtp-sink`` on a free 127.0.0.1 port, then runs in alternating rounds:

* ``smtp-source -d -s 50 -l 1024 -m N`` (C, connection reuse, no pipelining);
* ``smtpbench run`` with the equivalent profile (closed model, 50 sessions,
  connection reuse, ~1 KiB messages, a budget of N messages, pipelining auto);
* with ``--no-reuse`` also ``smtp-source -s 50 -l 1024`` against smtpbench
  with ``messages_per_session = 1`` (a new connection per message).

Each client runs as its own child process: its wall time, its CPU time
(``wait4`` rusage of exactly that child) and the sink's CPU time (from
``/proc``) are measured.  The table shows medians over the rounds: messages/s,
client CPU µs per message (the fair figure: the sink saturates its core from
about 10 sessions up, so messages/s mostly measures the sink) and the ratios
smtpbench / smtp-source.  Loopback only, bounded in count and time, stops by
itself.  Exit 0 on success, 2 on bad usage or a missing Postfix, 3 when a run
fails.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
SESSIONS = 50
PAYLOAD = 1024
#: smtp-source -l 1024 sends 1024 payload octets plus ~130 of headers and line ends;
#: smtpbench's size counts headers, so this keeps the bytes on the wire alike.
SMTPBENCH_SIZE = 1150
#: Hard bound on any one client run (a broken sink must not hang the benchmark).
RUN_TIMEOUT_S = 180.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A problem that ends the benchmark with a one-line message."""

    def __init__(self, message: str, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Ends the benchmark on a BenchError (its message on one line, its exit code) or Ctrl-C (exit 130)."""
    try:
        yield
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


@dataclass
class Sample:
    """One client run: what it sent, in how long, for how much CPU."""

    client: str
    variant: str
    round: int
    messages: int
    wall_s: float
    cpu_s: float
    sink_cpu_s: float
    messages_per_s: float

    @property
    def cpu_us_per_message(self) -> float:
        """Client CPU (user + system) per message, in µs."""
        return self.cpu_s / max(self.messages, 1) * 1e6


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def find_tool(name: str) -> str:
    """Path of a Postfix test program, or a BenchError (exit 2) naming the package."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None)
    if path is None:
        raise BenchError(f"{name} not found: install Postfix (Debian package 'postfix')", 2)
    return path


def machine() -> str:
    """The machine in one line: architecture, CPUs, Python (what a benchmark's JSON records)."""
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}"
    )


def write_json(path: str, doc: dict[str, Any], date_format: str = "%Y-%m-%d") -> None:
    """Write a benchmark's ``doc`` to ``path`` as JSON, headed by the date and the :func:`machine`."""
    full = {"date": time.strftime(date_format), "machine": machine(), **doc}
    Path(path).write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (0.0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


@contextlib.contextmanager
def smtp_sink(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run Postfix smtp-sink on 127.0.0.1:port until the block ends."""
    cmd = [find_tool("smtp-sink")]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root without dropping privileges
    cmd += ["-m", "1000", f"{HOST}:{port}", "1000"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=1) as probe:
                    if probe.recv(512).startswith(b"220"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                raise BenchError(f"smtp-sink did not start on {HOST}:{port}: {err[:200] or 'no banner'}")
            time.sleep(0.05)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace_s: float = 5) -> None:
    """SIGTERM ``proc``; SIGKILL it if it has not ended within ``grace_s`` seconds."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_child(cmd: list[str], sink_pid: int) -> tuple[float, float, float, str]:
    """Run ``cmd`` to its end; return (wall s, its CPU s, the sink's CPU s meanwhile, its output)."""
    sink_before = proc_cpu_s(sink_pid)
    cpu_before = children_cpu_s()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise BenchError(f"{Path(cmd[0]).name} did not finish within {RUN_TIMEOUT_S:g}s") from None
    wall = time.perf_counter() - start
    # communicate() reaped the child: its rusage is now in RUSAGE_CHILDREN, which
    # only reaped children add to (never the sink, still running).
    cpu = children_cpu_s() - cpu_before
    return wall, cpu, proc_cpu_s(sink_pid) - sink_before, out.decode(errors="replace")


def children_cpu_s() -> float:
    """CPU seconds (user + system) of all reaped children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_smtp_source(port: int, messages: int, reuse: bool, sink_pid: int, rnd: int) -> Sample:
    """One smtp-source run of ``messages`` messages over 50 sessions."""
    cmd = [find_tool("smtp-source")] + (["-d"] if reuse else [])
    cmd += ["-s", str(SESSIONS), "-l", str(PAYLOAD), "-m", str(messages), "-M", "smtpbench.example", f"{HOST}:{port}"]
    wall, cpu, sink_cpu, out = run_child(cmd, sink_pid)
    if out.strip():
        raise BenchError(f"smtp-source reported: {out.strip().splitlines()[-1][:200]}")
    return Sample("smtp-source", _variant(reuse), rnd, messages, wall, cpu, sink_cpu, messages / wall)


def smtpbench_command(profile: Path, results: Path) -> list[str]:
    """``smtpbench run`` through the CLI, or through the engine while the CLI cannot import yet."""
    if all(importlib.util.find_spec(m) is not None for m in ("smtpbench.conform.cli", "smtpbench.sink.cli")):
        return [sys.executable, "-m", "smtpbench", "run", str(profile), "--quiet", "--results-dir", str(results)]
    runner = (
        "import sys;from smtpbench.load.execute import execute;from smtpbench.load.profile import load_profile;"
        "o=execute(load_profile(sys.argv[1],results_dir=sys.argv[2]),quiet=True);"
        "sys.exit(0 if o.status=='completed' else 3)"
    )
    return [sys.executable, "-c", runner, str(profile), str(results)]


def write_profile(path: Path, port: int, messages: int, reuse: bool) -> None:
    """The smtpbench profile equivalent to the smtp-source command line."""
    per_session = 10**9 if reuse else 1
    path.write_text(
        f"""# Written by benchmarks/bench_vs_smtp_source.py: the twin of smtp-source {"-d " if reuse else ""}-s {SESSIONS} -l {PAYLOAD}
[target]
host = "{HOST}"
port = {port}
helo = "smtpbench.example"

[smtp]
pipelining = "auto"

[workload]
model = "closed"
sessions = {SESSIONS}
messages_per_session = {per_session}
messages = {messages}
grace = "30s"

[message]
size = {SMTPBENCH_SIZE}
recipients = 1
variants = 16

[output]
progress = "none"
""",
        encoding="utf-8",
    )


def run_smtpbench(port: int, messages: int, reuse: bool, sink_pid: int, rnd: int, work: Path) -> Sample:
    """One smtpbench run; messages/s comes from its own summary.json."""
    profile = work / f"profile-{_variant(reuse)}.toml"
    write_profile(profile, port, messages, reuse)
    results = work / f"results-{_variant(reuse)}-{rnd}"
    wall, cpu, sink_cpu, out = run_child(smtpbench_command(profile, results), sink_pid)
    summaries = sorted(results.glob("*/summary.json"))
    if not summaries:
        raise BenchError(f"smtpbench wrote no summary.json: {out.strip()[-300:]}")
    summary = json.loads(summaries[-1].read_text())
    counts = summary["counts"]
    if summary["status"] != "completed" or counts.get("errors", 0) or counts["messages_accepted"] != messages:
        raise BenchError(
            f"smtpbench run not clean: status {summary['status']}, accepted {counts['messages_accepted']}"
            f" of {messages}, errors {summary.get('errors')}"
        )
    return Sample(
        "smtpbench",
        _variant(reuse),
        rnd,
        messages,
        wall,
        cpu,
        sink_cpu,
        float(summary["throughput"]["messages_per_s"]),
    )


def _variant(reuse: bool) -> str:
    return "reuse" if reuse else "no-reuse"


def median_of(samples: list[Sample], client: str, variant: str) -> dict[str, float]:
    """Medians of one client's samples in one variant."""
    mine = [s for s in samples if s.client == client and s.variant == variant]
    return {
        "messages_per_s": statistics.median(s.messages_per_s for s in mine),
        "cpu_us_per_message": statistics.median(s.cpu_us_per_message for s in mine),
        "sink_cpu_share": statistics.median(s.sink_cpu_s / s.wall_s for s in mine),
        "rounds": len(mine),
    }


def report(samples: list[Sample], variants: list[str]) -> str:
    """The result table (medians) and the ratios smtpbench / smtp-source."""
    lines = [
        f"{'variant':<9} {'client':<12} {'msgs/s':>9} {'CPU µs/msg':>11} {'sink CPU':>9}",
        "-" * 54,
    ]
    for variant in variants:
        src = median_of(samples, "smtp-source", variant)
        sb = median_of(samples, "smtpbench", variant)
        for name, m in (("smtp-source", src), ("smtpbench", sb)):
            lines.append(
                f"{variant:<9} {name:<12} {m['messages_per_s']:>9.0f} {m['cpu_us_per_message']:>11.1f}"
                f" {m['sink_cpu_share'] * 100:>8.0f}%"
            )
        rate = sb["messages_per_s"] / src["messages_per_s"]
        cpu = sb["cpu_us_per_message"] / src["cpu_us_per_message"]
        lines.append(f"{variant:<9} {'ratio':<12} {rate:>8.2f}x {cpu:>10.2f}x   (smtpbench / smtp-source)")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options; bad values end with exit 2 (argparse)."""
    p = argparse.ArgumentParser(description="smtpbench vs Postfix smtp-source on one smtp-sink (loopback).")
    p.add_argument("--quick", action="store_true", help="a ~20 s run: 2 rounds of 20,000 messages")
    p.add_argument("--rounds", type=int, help="rounds per client (default 3)")
    p.add_argument("--messages", type=int, help="messages per run (default 100,000)")
    p.add_argument("--no-reuse", action="store_true", help="also compare a new connection per message")
    p.add_argument("--json", metavar="FILE", help="also write every sample and the medians to FILE")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.messages = args.messages or (20_000 if args.quick else 100_000)
    if not 1 <= args.rounds <= 20:
        p.error("--rounds must be 1..20")
    if not 1_000 <= args.messages <= 2_000_000:
        p.error("--messages must be 1000..2000000")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table; return the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    variants = ["reuse"] + (["no-reuse"] if args.no_reuse else [])
    samples: list[Sample] = []
    with reported():
        find_tool("smtp-source")
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="smtpbench-bench-") as tmp, smtp_sink(port) as sink:
            print(
                f"smtp-sink on {HOST}:{port}; {args.rounds} rounds x {args.messages} messages, {SESSIONS} sessions,"
                f" {os.cpu_count()} CPUs",
                flush=True,
            )
            for rnd in range(1, args.rounds + 1):
                for variant in variants:
                    reuse = variant == "reuse"
                    # Alternate who goes first, so that drift (other load, thermal) hits both alike.
                    order = ("smtp-source", "smtpbench") if rnd % 2 else ("smtpbench", "smtp-source")
                    for client in order:
                        if client == "smtp-source":
                            s = run_smtp_source(port, args.messages, reuse, sink.pid, rnd)
                        else:
                            s = run_smtpbench(port, args.messages, reuse, sink.pid, rnd, Path(tmp))
                        samples.append(s)
                        print(
                            f"  round {rnd} {variant:<8} {client:<11} {s.messages_per_s:>8.0f} msgs/s"
                            f" {s.cpu_us_per_message:>6.1f} µs CPU/msg  (wall {s.wall_s:.1f}s)",
                            flush=True,
                        )
    print()
    print(report(samples, variants))
    if args.json:
        doc = {
            "messages": args.messages,
            "sessions": SESSIONS,
            "samples": [asdict(s) | {"cpu_us_per_message": s.cpu_us_per_message} for s in samples],
            "medians": {v: {c: median_of(samples, c, v) for c in ("smtp-source", "smtpbench")} for v in variants},
        }
        write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
