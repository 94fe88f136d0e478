#!/bin/bash
# usage: ROUNDS=n EVENTS=n backfill-ab.sh OLD_BINARY NEW_BINARY
# Alternates 1M-event (EVENTS) backfills of two engine builds with stop22-cpu/ab.sh: events/s,
# the engine's CPU and peak memory (/usr/bin/time), Redis's CPU over the run.
here=$(dirname "$0")
for round in $(seq 1 ${ROUNDS:-3}); do
  for build in "$1" "$2"; do
    echo "== round $round $build"
    ENGINE=$build EVENTS=${EVENTS:-1000000} "$here/../stop22-cpu/ab.sh"
  done
done
