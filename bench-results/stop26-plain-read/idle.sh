#!/bin/bash
# usage: SECONDS_IDLE=n idle.sh ENGINE_BINARY...
# An engine with nothing to read, for SECONDS_IDLE (30) seconds after a 3 s start: its CPU
# (utime + stime from /proc) and Redis's (INFO cpu) over that time. Own database and streams.
for engine in "$@"; do
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS rps_idle WITH (FORCE)" -c "CREATE DATABASE rps_idle" postgres
  redis-cli --scan --pattern 'rps_idle:*' | xargs -r redis-cli unlink >/dev/null
  $engine --database-url postgres://postgres@127.0.0.1:5432/rps_idle --redis-url redis://127.0.0.1:6379 \
    --streams rps_idle:a,rps_idle:b --term-updates-stream rps_idle:term_updates --create-streams \
    --progress off --metrics-addr 127.0.0.1:0 > /tmp/idle-engine.log 2>&1 &
  pid=$!
  sleep 3
  rc() { redis-cli info cpu | awk -F: '/used_cpu_(sys|user):/{s+=$2} END{print s}'; }
  ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
  r0=$(rc); t0=$(ticks)
  sleep ${SECONDS_IDLE:-30}
  r1=$(rc); t1=$(ticks)
  kill -TERM $pid; wait $pid
  echo "$engine: engine $(echo "($t1 - $t0) / $(getconf CLK_TCK)" | bc -l | cut -c1-5) s, redis $(echo "$r1 - $r0" | bc -l | cut -c1-5) s of CPU in ${SECONDS_IDLE:-30} s idle"
done
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS rps_idle WITH (FORCE)" postgres
redis-cli --scan --pattern 'rps_idle:*' | xargs -r redis-cli unlink >/dev/null
