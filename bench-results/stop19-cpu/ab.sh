#!/bin/bash
# usage: prof.sh [wrapper...]; resets db + streams then runs engine backfill
cd /tmp
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS rps_prof WITH (FORCE)" postgres
redis-cli --scan --pattern 'rps_prof:*' | xargs -r redis-cli unlink >/dev/null
/work/main/target/release/loadgen generate --events ${EVENTS:-300000} --redis-url redis://127.0.0.1:6379 --stream-prefix rps_prof: >/dev/null 2>&1
S=rps_prof:intuition_atom_created,rps_prof:intuition_redeemed,rps_prof:intuition_deposited,rps_prof:intuition_share_price_changed,rps_prof:intuition_triple_created
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE rps_prof" postgres
ENGINE=${ENGINE:-/work/main/target/release/redis-postgres-sync}
"$@" $ENGINE --database-url postgres://postgres@127.0.0.1:5432/rps_prof --redis-url redis://127.0.0.1:6379 --streams $S --term-updates-stream rps_prof:term_updates --backfill --exit-when-idle --progress off --metrics-addr 127.0.0.1:0 2>&1 | grep -E "done|user"
