#!/bin/bash
# The reorg bases' cost on the per-event path: the engine binary, live mode, --batch-size 1,
# over the same generated workload, with --reorg-window W (0 keeps no bases).
# usage: ab.sh W   (EVENTS, ENGINE as in stop19-cpu/ab.sh)
cd /tmp
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS rps_win WITH (FORCE)" postgres
redis-cli --scan --pattern 'rps_win:*' | xargs -r redis-cli unlink >/dev/null
/work/main/target/release/loadgen generate --events ${EVENTS:-5000} --redis-url redis://127.0.0.1:6379 --stream-prefix rps_win: >/dev/null 2>&1
S=rps_win:intuition_atom_created,rps_win:intuition_redeemed,rps_win:intuition_deposited,rps_win:intuition_share_price_changed,rps_win:intuition_triple_created
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE rps_win" postgres
ENGINE=${ENGINE:-/work/main/target/release/redis-postgres-sync}
start=$(date +%s.%N)
/usr/bin/time -f "user %U sys %S" $ENGINE --database-url postgres://postgres@127.0.0.1:5432/rps_win --redis-url redis://127.0.0.1:6379 --streams $S --term-updates-stream rps_win:term_updates --batch-size 1 --reorg-window "$1" --exit-when-idle --progress off --metrics-addr 127.0.0.1:0 2>&1 | grep -E "done|user"
end=$(date +%s.%N)
echo "window $1: $(echo "$end - $start" | bc) s wall; bases kept: $(psql -At -h 127.0.0.1 -U postgres -c 'SELECT count(*) FROM reorg_base' rps_win)"
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS rps_win WITH (FORCE)" postgres
redis-cli --scan --pattern 'rps_win:*' | xargs -r redis-cli unlink >/dev/null
