#!/usr/bin/env bash
# Scaling of `smtpbench run --workers N` on one machine (issue 12: goal >= 80 % of linear on 16 cores).
#
# Pins Postfix smtp-sink to the last SINK_CPUS CPUs and smtpbench (its parent and workers) to the others,
# then runs benchmarks/bench_workers.py for each worker count in WORKERS (default 1 2 4 8 14: on a 16-core
# machine, 14 client cores and 2 for the sink).  Prints the table (msgs/s, speed-up, efficiency = speed-up / N)
# and writes it as JSON to OUT (default benchmarks/scale-<cores>cpu.json).
#
#   benchmarks/scale.sh                                   # 16+ cores: the full run, ~10 minutes
#   WORKERS="1 2" ROUNDS=1 MESSAGES=2000 benchmarks/scale.sh   # a smoke run on a small machine
#
# Environment: WORKERS, ROUNDS (3), MESSAGES per worker (40000), SESSIONS per worker (25), SINK_CPUS (2),
# PYTHON (the project's .venv/bin/python), OUT.  Exit codes as bench_workers.py: 0 ok, 2 usage, 3 a run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
WORKERS=${WORKERS:-1 2 4 8 14}
ROUNDS=${ROUNDS:-3}
MESSAGES=${MESSAGES:-40000}
SESSIONS=${SESSIONS:-25}
SINK_CPUS=${SINK_CPUS:-2}
CORES=$(nproc)
if [ "$CORES" -le "$SINK_CPUS" ]; then
  echo "scale.sh: $CORES CPUs: need more than SINK_CPUS=$SINK_CPUS" >&2
  exit 2
fi
CLIENT_LAST=$((CORES - SINK_CPUS - 1))
for n in $WORKERS; do
  if [ "$n" -gt $((CLIENT_LAST + 1)) ]; then
    echo "scale.sh: warning: $n workers on $((CLIENT_LAST + 1)) client CPUs: the last counts share cores" >&2
  fi
done
OUT=${OUT:-benchmarks/scale-${CORES}cpu.json}
echo "scale.sh: $CORES CPUs: smtpbench on 0-$CLIENT_LAST, smtp-sink on $((CLIENT_LAST + 1))-$((CORES - 1))"
exec "$PYTHON" benchmarks/bench_workers.py \
  --workers "$(echo "$WORKERS" | tr -s ' ' ',')" \
  --rounds "$ROUNDS" \
  --messages-per-worker "$MESSAGES" \
  --sessions-per-worker "$SESSIONS" \
  --client-cpus "0-$CLIENT_LAST" \
  --sink-cpus "$((CLIENT_LAST + 1))-$((CORES - 1))" \
  --json "$OUT"
