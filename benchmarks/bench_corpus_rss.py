"""Peak memory of replaying a large corpus: ``[message] corpus`` is indexed and streamed, never loaded.

Builds an mbox of about ``--size`` (default 1 GiB) in a temporary folder: messages with log-normal sizes
(median 32 KiB, 1 KiB .. 4 MiB), text headers and a base64 body of seeded random octets.  Starts
``smtpbench sink`` on a free 127.0.0.1 port, then runs ``smtpbench run`` against it (closed model, 8
sessions, 50 messages a session) replaying as many messages as the corpus holds, drawn with the seed, so
about the corpus's size goes over the wire.  The replaying process's peak RSS is its ``ru_maxrss`` (the
rusage of exactly that child, waited for before the sink stops).  For comparison the same is measured for a
text-only run of 1,000 pre-rendered 10 KiB messages (the process's baseline).

Loopback only, bounded in time (``--timeout``), removes its folder.  Exit 0 when the run completed and the
peak is under ``--limit-mb`` (default 150), 1 when over, 3 when a run fails.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smtpbench.sink.embedded import EmbeddedSink

MEDIAN = 32 * 1024
MAX_MESSAGE = 4 * 1024 * 1024


def build_mbox(path: Path, size: int, seed: int = 1) -> int:
    """Write an mbox of about ``size`` octets; return its message count."""
    rng = random.Random(seed)
    written = count = 0
    with open(path, "wb") as f:
        while written < size:
            body_len = max(1024, min(MAX_MESSAGE, int(rng.lognormvariate(math.log(MEDIAN), 1.0))))
            body = base64.encodebytes(rng.randbytes(body_len * 3 // 4))
            head = (
                f"From corpus@bench.test Thu Jan  1 00:00:00 2026\n"
                f"From: Corpus <corpus{count}@bench.test>\nTo: user@example.test\nSubject: corpus message {count}\n"
                f"Message-ID: <{count}@bench.test>\nMIME-Version: 1.0\nContent-Type: application/octet-stream\n"
                "Content-Transfer-Encoding: base64\n\n"
            ).encode()
            f.write(head + body + b"\n")
            written += len(head) + len(body) + 1
            count += 1
    return count


def replay(work: Path, port: int, profile_body: str, timeout: float) -> tuple[dict[str, object], float, float]:
    """Run ``smtpbench run`` as a child; return its summary, its peak RSS (MiB) and wall time."""
    profile = work / f"p{time.monotonic_ns()}.toml"
    results = work / "results"
    profile.write_text(
        f'[target]\nhost = "127.0.0.1"\nport = {port}\n{profile_body}'
        f'[output]\nresults_dir = "{results}"\nprogress = "none"\n'
    )
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "smtpbench", "run", str(profile)], stdout=subprocess.DEVNULL)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    if wall > timeout:
        print(f"run took {wall:.0f}s, over --timeout", file=sys.stderr)
    summaries = sorted(results.glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    summary = json.loads(summaries[-1].read_text()) if summaries else {"status": f"exit {proc.returncode}"}
    return summary, usage.ru_maxrss / 1024, wall  # ru_maxrss is in KiB on Linux


def main() -> int:
    """Build, replay, report; the exit code says whether the peak stayed under the limit."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024**3, help="corpus size in octets (default 1 GiB)")
    ap.add_argument("--limit-mb", type=float, default=150.0, help="peak RSS goal in MiB (default 150)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds allowed for the replay (default 900)")
    ap.add_argument("--dir", default=None, help="where to build the corpus (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="smtpbench-corpus-") as tmp:
        work = Path(tmp)
        t = time.monotonic()
        count = build_mbox(work / "corpus.mbox", args.size)
        built = time.monotonic() - t
        size = (work / "corpus.mbox").stat().st_size
        print(f"corpus: {count} messages, {size / 1024**2:.0f} MiB mbox, built in {built:.1f}s")
        with EmbeddedSink(["--max-size", "0"]) as (host, port):
            base, base_rss, _ = replay(
                work,
                port,
                "[workload]\nsessions = 8\nmessages = 1000\nmessages_per_session = 50\nseed = 1\n"
                '[message]\nsize = "10KiB"\n',
                args.timeout,
            )
            summary, rss, wall = replay(
                work,
                port,
                f"[workload]\nsessions = 8\nmessages = {count}\nmessages_per_session = 50\nseed = 1\n"
                f'[message]\ncorpus = "{work / "corpus.mbox"}"\n',
                args.timeout,
            )
    counts = summary.get("counts", {})
    assert isinstance(counts, dict)
    sent = counts.get("bytes_sent", 0)
    print(f"baseline (1,000 x 10 KiB pre-rendered): peak RSS {base_rss:.0f} MiB, status {base.get('status')}")
    print(
        f"corpus replay: {counts.get('messages_accepted', 0)} messages accepted, {sent / 1024**2:.0f} MiB sent "
        f"in {wall:.0f}s; peak RSS {rss:.0f} MiB (goal < {args.limit_mb:.0f} MiB); status {summary.get('status')}"
    )
    if summary.get("status") != "completed" or counts.get("messages_accepted") != count:
        return 3
    return 0 if rss < args.limit_mb else 1


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
