"""Memory per session and ramp time of one ``smtpbench run`` process holding many concurrent sessions.

Starts ``smtpbench sink`` (its own process) on a free 127.0.0.1 port, then, for
a small and a large number of sessions (default 100 and 10,000), one
``smtpbench run`` of a closed-model profile in which every session connects,
delivers one message, then idles in ``think_time`` (``hold`` seconds) with its
connection open, delivers a second message and quits (``messages = 2 x
sessions`` ends the run).  Sessions bind round-robin to the host addresses of
``127.0.0.0/29`` (``target.source_addresses``).

While a run holds its sessions, the script counts the generator's established
connections to the sink in ``/proc/net/tcp`` and samples the generator's RSS
(``VmRSS`` in ``/proc/PID/status``) every 0.1 s.  Figures:

* ramp time: from the first established connection to all of them;
* RSS per session: (RSS of the large run - RSS of the small run) / (difference
  in sessions), both taken once every session is established and idle.

The open-files limit is raised to the hard limit (both processes need one
descriptor per connection); when that is too low for the sessions asked for,
the script measures as many as the limit allows and says so.  Bounded: every
run ends within ``hold`` + 120 s or is killed.  Loopback only.  Exit 0 on
success, 3 when a run fails.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smtpbench.sink.embedded import EmbeddedSink

HOST = "127.0.0.1"
SOURCES = "127.0.0.0/29"
SAMPLE_S = 0.1
#: Descriptors a process needs besides its connections (interpreter, trio, results files).
SPARE_FDS = 200
#: How long past ``hold`` a run may take before it is killed.
RUN_MARGIN_S = 120.0
#: Result folders already read (each run adds one under the same results_dir).
done_runs: set[str] = set()


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards ``wanted`` (at most the hard limit); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def established_to(port: int) -> int:
    """Client-side TCP connections in state ESTABLISHED to ``port`` on this host (``/proc/net/tcp``)."""
    n = 0
    hex_port = f":{port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split(None, 4)
            if fields[3] == "01" and fields[2].endswith(hex_port):
                n += 1
    return n


def rss_kib(pid: int) -> int:
    """The process's resident set size in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(sessions: int, port: int, hold: float, work: Path) -> dict[str, float]:
    """One run of ``sessions`` idle sessions: ramp time (s) and RSS (KiB) while all are held."""
    profile = work / f"sessions-{sessions}.toml"
    profile.write_text(
        f'[target]\nhost = "{HOST}"\nport = {port}\nsource_addresses = "{SOURCES}"\n'
        f'[workload]\nmodel = "closed"\nsessions = {sessions}\nmessages = {2 * sessions}\n'
        f'messages_per_session = 2\nthink_time = "{hold}s"\ngrace = "30s"\n'
        f'[output]\nresults_dir = "{work / "results"}"\nprogress = "none"\nreport = false\n'
    )
    cmd = [sys.executable, "-m", "smtpbench", "run", str(profile), "--quiet"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + hold + RUN_MARGIN_S
    first = full = None
    rss = 0
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            n = established_to(port)
            now = time.monotonic()
            if n and first is None:
                first = now
            if n >= sessions and full is None:
                full = now
            if full is not None and now - full >= 1.0:  # settled: every session idle in think_time
                rss = max(rss, rss_kib(proc.pid))
                if now - full >= min(3.0, hold / 2):
                    break
            time.sleep(SAMPLE_S)
        out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1.0))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    if proc.returncode != 0 or first is None or full is None or not rss:
        raise SystemExit(f"bench_sessions: run of {sessions} sessions failed (exit {proc.returncode}): {err.strip()}")
    (run_dir,) = [p for p in (work / "results").iterdir() if p.name not in done_runs]
    done_runs.add(run_dir.name)
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary["counts"]["messages_accepted"] != 2 * sessions or summary["counts"]["errors"]:
        raise SystemExit(f"bench_sessions: run of {sessions} sessions was not clean: {summary['counts']}")
    return {"sessions": sessions, "ramp_s": full - first, "rss_kib": rss, "messages": 2 * sessions}


def main() -> int:
    """Parse arguments, measure the small and the large run, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=10_000, help="concurrent sessions of the large run")
    ap.add_argument("--baseline", type=int, default=100, help="concurrent sessions of the small run")
    ap.add_argument("--hold", type=float, default=15.0, help="seconds each session idles with its connection open")
    args = ap.parse_args()
    limit = raise_fd_limit(args.sessions + SPARE_FDS)
    sessions = min(args.sessions, limit - SPARE_FDS)
    if sessions < args.sessions:
        print(f"open-files limit {limit}: measuring {sessions} sessions instead of {args.sessions}")
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp, EmbeddedSink() as (_, port):
        small = measure(args.baseline, port, args.hold, Path(tmp))
        large = measure(sessions, port, args.hold, Path(tmp))
    per_session = (large["rss_kib"] - small["rss_kib"]) * 1024 / (large["sessions"] - small["sessions"])
    for r in (small, large):
        print(f"{r['sessions']:>6,} sessions: RSS {r['rss_kib'] / 1024:6.1f} MiB, ramp {r['ramp_s']:5.2f} s")
    print(f"RSS per session: {per_session / 1024:.1f} KiB ({large['sessions']:,} vs {small['sessions']:,} sessions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
