#!/bin/bash
# Stop 24 experiment: the live-mode engine (no --backfill) draining a pre-written workload of
# EVENTS events, one per message (live.sh's shape), with --batch-size BATCH, on a fresh
# database rps_bs. No pacing and no other load: what one batch of a given size costs.
# Prints the engine's CPU, its per-stage seconds per batch and the merge functions' self times.
DB=rps_bs; E=/work/main/target/release
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" postgres 2>/dev/null
redis-cli --scan --pattern "$DB:*" | xargs -r redis-cli unlink >/dev/null
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" -c "ALTER DATABASE $DB SET track_functions='all'" postgres
if [ -n "$AUTOEXPLAIN" ]; then for s in "session_preload_libraries=auto_explain" "auto_explain.log_min_duration=$AUTOEXPLAIN" "auto_explain.log_nested_statements=on" "auto_explain.log_analyze=on" "auto_explain.log_buffers=on"; do psql -qh 127.0.0.1 -U postgres -c "ALTER DATABASE $DB SET $s" postgres; done; fi
$E/loadgen generate --events ${EVENTS:-100000} --events-per-message 1 --redis-url redis://127.0.0.1:6379 --stream-prefix $DB: > /dev/null 2>&1
S=$DB:intuition_atom_created,$DB:intuition_redeemed,$DB:intuition_deposited,$DB:intuition_share_price_changed,$DB:intuition_triple_created
U="postgres://postgres@127.0.0.1:5432/$DB"
${ENGINE:-$E/redis-postgres-sync} --database-url $U --redis-url redis://127.0.0.1:6379 --streams $S --term-updates-stream $DB:term_updates --progress off --metrics-addr 127.0.0.1:9941 --batch-size ${BATCH:-10000} --exit-when-idle $ENGINE_ARGS > /tmp/bs-engine.log 2>&1 &
EP=$!
while kill -0 $EP 2>/dev/null; do curl -s 127.0.0.1:9941/metrics > /tmp/bs.metrics.tmp && mv /tmp/bs.metrics.tmp /tmp/bs.metrics; sleep 0.5; done
grep -E "done|events=" /tmp/bs-engine.log | tail -1 | cut -c1-300
python3 - <<'PY'
import re
m={}
for l in open('/tmp/bs.metrics'):
    r=re.match(r'redis_postgres_sync_batch_stage_duration_seconds_(sum|count)\{stage="(\w+)"\} (\S+)',l)
    if r: m.setdefault(r[2],{})[r[1]]=float(r[3])
n=m['merge']['count']
print('batches',int(n),' per batch ms:',' '.join(f"{k} {v['sum']/n*1000:.1f}" for k,v in m.items() if v['sum']>0))
PY
psql -h 127.0.0.1 -U postgres $DB -Atc "select funcname||' '||calls||' '||round(self_time::numeric) from pg_stat_user_functions order by self_time desc limit 8" | tr '\n' ';'; echo
