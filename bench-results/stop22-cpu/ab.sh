#!/bin/bash
# usage: [VAR=value for the engine ...] ENGINE=<engine binary> EVENTS=<n> ab.sh
# Resets database rps_prof and streams rps_prof:*, writes a loadgen workload (seed 42), runs
# the engine's backfill under /usr/bin/time and prints its CPU, memory and faults, and Redis's
# CPU over the run (INFO cpu before and after).
cd /tmp
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS rps_prof WITH (FORCE)" postgres 2>/dev/null
redis-cli --scan --pattern 'rps_prof:*' | xargs -r redis-cli unlink >/dev/null
/work/main/target/release/loadgen generate --events ${EVENTS:-300000} --redis-url redis://127.0.0.1:6379 --stream-prefix rps_prof: >/dev/null 2>&1
S=rps_prof:intuition_atom_created,rps_prof:intuition_redeemed,rps_prof:intuition_deposited,rps_prof:intuition_share_price_changed,rps_prof:intuition_triple_created
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE rps_prof" postgres
rc() { redis-cli info cpu | awk -F: '/used_cpu_(sys|user):/{s+=$2} END{print s}'; }
r0=$(rc)
/usr/bin/time -f "user %U sys %S wall %e maxrss %M minflt %R majflt %F vcsw %w ivcsw %c" $ENGINE --database-url "postgres://postgres@127.0.0.1:5432/rps_prof${PGOPTS}" --redis-url redis://127.0.0.1:6379 --streams $S --term-updates-stream rps_prof:term_updates --backfill --exit-when-idle --progress off --metrics-addr 127.0.0.1:0 2>&1 | grep -E "done|user" | sed -E 's/.*(events=[0-9]+).*(rate=.*)/\1 \2/'
r1=$(rc); echo "redis cpu $(echo "$r1 - $r0" | bc)"
