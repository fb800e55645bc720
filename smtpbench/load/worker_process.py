"""One worker process of ``smtpbench run --workers N`` (``python -m smtpbench.load.worker_process``).

Protocol with the parent (:mod:`smtpbench.load.workers`), over this process's stdin and stdout:

1. the parent writes a :class:`WorkerJob`: an 8-byte big-endian length, then its pickle
   (the parent is this process's only writer: the pickle never crosses a trust boundary);
2. the worker imports and checks everything, then prints ``ready``;
3. the parent writes ``start EPOCH`` (the common start time of every worker) or ``stop``;
4. the worker runs its part with :func:`smtpbench.load.execute.execute` into
   ``RUN/workers/<index>/`` (its hlog and timeline flushed every interval, which the
   parent follows), and exits 0 whatever the run's status (the status is in its summary).

The parent's SIGINT is forwarded here (first: graceful, second: at once), as for a
single run.  When stdin reaches end of file (the parent died), the worker stops
as on a first SIGINT, so no worker outlives its run for long.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import struct
import sys
import threading
from dataclasses import dataclass
from typing import BinaryIO

from smtpbench.errors import EXIT_RUN_ERROR, EXIT_USAGE, ConfigError, RunError
from smtpbench.load.profile import Profile
from smtpbench.load.split import ShardPlan

#: A job larger than this is refused (a profile with its message pool inlined stays far below).
MAX_JOB_BYTES = 1 << 30


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs: its part of the run, where it writes, which target it drives."""

    index: int
    profile: Profile  # its share of the load already, no thresholds, no metrics port
    recorded: Profile  # the whole run's, written to its profile.toml
    plan: ShardPlan  # its part; start_at comes with ``start``
    run_id: str  # its folder's name under profile.output.results_dir
    address: tuple[str, int]


def job_bytes(job: WorkerJob) -> bytes:
    """The bytes the parent writes for ``job`` (length, then pickle)."""
    data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    return struct.pack(">Q", len(data)) + data


def read_job(stream: BinaryIO) -> WorkerJob:
    """Read one job written by :func:`send_job`; ``RunError`` when the stream ends or is too large."""
    head = stream.read(8)
    if len(head) != 8:
        raise RunError("worker: no job on stdin")
    (size,) = struct.unpack(">Q", head)
    if size > MAX_JOB_BYTES:
        raise RunError(f"worker: job of {size} bytes refused")
    data = stream.read(size)
    if len(data) != size:
        raise RunError("worker: job cut short")
    job = pickle.loads(data)  # noqa: S301 (written by our own parent over a private pipe)
    if not isinstance(job, WorkerJob):
        raise RunError("worker: not a job")
    return job


def _stop_when_orphaned(fd: int) -> None:
    """Block until the parent closes stdin (or dies), then stop this run as a first SIGINT does."""
    # The raw descriptor, not sys.stdin: a thread blocked in a buffered read aborts interpreter shutdown.
    while os.read(fd, 4096):
        pass
    os.kill(os.getpid(), signal.SIGINT)


def _ignore(signum: int, frame: object) -> None:
    """A SIGINT outside the run's event loop: nothing to do (see :func:`main`)."""


def main() -> int:
    """Run one worker; the exit code says only whether it could run (its status is in its summary)."""
    # A signal during set-up (before the run's own handlers) must not print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    try:
        job = read_job(stdin)
        from smtpbench.load.execute import execute

        print("ready", flush=True)
        os.dup2(2, 1)  # nobody reads our stdout after this: anything printed goes to the worker's log
        line = stdin.readline().decode("ascii", "replace").split()
        if not line or line[0] != "start":
            return EXIT_RUN_ERROR
        plan = dataclasses.replace(job.plan, start_at=float(line[1]))
        threading.Thread(target=_stop_when_orphaned, args=(stdin.fileno(),), daemon=True).start()
        # The run's loop receives SIGINT itself (first: graceful, second: at once); outside it (set-up, and
        # writing the results after it) a SIGINT must not raise in the middle: it is ignored there, and the
        # parent's bounded escalation covers one lost during set-up.
        signal.signal(signal.SIGINT, _ignore)
        execute(
            job.profile,
            quiet=True,
            progress="none",
            shard=plan,
            recorded=job.recorded,
            run_id=job.run_id,
            address=job.address,
        )
    except ConfigError as exc:
        print(f"smtpbench: worker error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RunError as exc:
        print(f"smtpbench: worker failed: {exc}", file=sys.stderr)
        return EXIT_RUN_ERROR
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy's: the job's classes unpickle from there.
    from smtpbench.load import worker_process

    sys.exit(worker_process.main())
