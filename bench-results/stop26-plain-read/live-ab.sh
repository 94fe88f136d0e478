#!/bin/bash
# usage: ROUNDS=n live-ab.sh OLD_LOADGEN NEW_LOADGEN
# Alternates the quick live bench (1k / 5k / 10k events/s, three runs each, no scale runs) of
# two builds; each run's report goes to live-<round>-<old|new>/.
here=$(cd "$(dirname "$0")" && pwd)
for round in $(seq 1 ${ROUNDS:-2}); do
  for which in old new; do
    bin=$1; [ $which = new ] && bin=$2
    $bin bench --live-rates 1000,5000,10000 --repeat 3 --scale-sizes 0 --scale-events 1000 --events 20000 \
      --per-event-events 100 --out-dir "$here/live-$round-$which" > "$here/live-$round-$which.log" 2>&1
    echo "round $round $which rc=$?"
  done
done
