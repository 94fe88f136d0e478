#!/bin/bash
# Stop 24: the bench's live section, two loadgen builds alternated ($OLD, $NEW: loadgen
# binaries; the engine and the worker run inside loadgen). Each round runs one bench per
# build at 5,000 and 10,000 events/s, three runs each; reports go to $OUT/<build>-<round>.
OUT=${OUT:-/tmp/bench-ab}; mkdir -p $OUT
for round in $(seq 1 ${ROUNDS:-2}); do
  for build in old new; do
    bin=$OLD; [ $build = new ] && bin=$NEW
    $bin bench --live-rates 5000,10000 --repeat 3 --scale-sizes 0 --scale-events 1000 --events 20000 \
      --per-event-events 100 --out-dir $OUT/$build-$round > $OUT/$build-$round.log 2>&1
    echo "$build-$round rc=$?"
  done
done
