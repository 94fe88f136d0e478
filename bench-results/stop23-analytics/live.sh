#!/bin/bash
# Stop 23 experiment: fresh database rps_live; engine binary + analytics worker (none with
# NO_WORKER=1); SQL_OVERRIDE=file loaded after both started; ANALYZE_EVERY=s runs ANALYZE during
# the run; AUTOEXPLAIN=ms logs slow plans. loadgen paces EVENTS events at RATE/s, one per
# message; prints commit-latency buckets, CPU of postgres / worker / engine over the run, table
# scan counters and function times. Needs target/release binaries (E below).
DB=rps_live; E=/work/main/target/release
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" postgres 2>/dev/null
redis-cli --scan --pattern "$DB:*" | xargs -r redis-cli unlink >/dev/null
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" -c "ALTER DATABASE $DB SET track_functions='all'" postgres
if [ -n "$AUTOEXPLAIN" ]; then for s in "session_preload_libraries=auto_explain" "auto_explain.log_min_duration=$AUTOEXPLAIN" "auto_explain.log_nested_statements=on" "auto_explain.log_analyze=on"; do psql -qh 127.0.0.1 -U postgres -c "ALTER DATABASE $DB SET $s" postgres; done; fi
S=$DB:intuition_atom_created,$DB:intuition_redeemed,$DB:intuition_deposited,$DB:intuition_share_price_changed,$DB:intuition_triple_created
U="postgres://postgres@127.0.0.1:5432/$DB"
${ENGINE:-$E/redis-postgres-sync} --database-url $U --redis-url redis://127.0.0.1:6379 --streams $S --create-streams --term-updates-stream $DB:term_updates --progress off --metrics-addr 127.0.0.1:9931 > /tmp/live-engine.log 2>&1 &
EP=$!
sleep 2
if [ -z "$NO_WORKER" ]; then $E/analytics-worker --database-url $U --redis-url redis://127.0.0.1:6379 --stream $DB:term_updates --metrics-addr 127.0.0.1:9932 > /tmp/live-worker.log 2>&1 & WP=$!; fi
sleep 1; if [ -n "$SQL_OVERRIDE" ]; then psql -qh 127.0.0.1 -U postgres $DB -f $SQL_OVERRIDE 2>/dev/null; fi
( if [ -n "$ANALYZE_EVERY" ]; then for i in $(seq 1 12); do sleep $ANALYZE_EVERY; psql -qh 127.0.0.1 -U postgres $DB -c ANALYZE; done; fi ) & AP=$!
P0=$(python3 $(dirname $0)/pgcpu.py postgres); W0=$(python3 $(dirname $0)/pgcpu.py analytics-work); N0=$(python3 $(dirname $0)/pgcpu.py ${ENGINE_PROC:-redis-postgres})
$E/loadgen generate --events ${EVENTS:-100000} --events-per-message 1 --rate ${RATE:-10000} --redis-url redis://127.0.0.1:6379 --stream-prefix $DB: > /tmp/live-gen.log 2>&1
sleep 3; kill $AP 2>/dev/null; echo "cpu postgres $(echo "$(python3 $(dirname $0)/pgcpu.py postgres) - $P0" | bc) worker $(echo "$(python3 $(dirname $0)/pgcpu.py analytics-work) - $W0" | bc) engine $(echo "$(python3 $(dirname $0)/pgcpu.py ${ENGINE_PROC:-redis-postgres}) - $N0" | bc)"
curl -s 127.0.0.1:9931/metrics > /tmp/live-engine.metrics; grep -E "commit_latency.*bucket" /tmp/live-engine.metrics | grep -E 'le="(0.05|0.1|0.25|\+Inf)"' 
curl -s 127.0.0.1:9932/metrics | grep -E "^redis_postgres_sync_worker" | head -20
kill -INT $EP $WP 2>/dev/null; wait
psql -h 127.0.0.1 -U postgres $DB -c "select relname, seq_scan, seq_tup_read, idx_scan, n_live_tup, last_autoanalyze is not null analyzed from pg_stat_user_tables where seq_scan>0 or idx_scan>0 order by seq_tup_read desc limit 15" -c "select funcname, calls, round(total_time::numeric) total_ms, round(self_time::numeric) self_ms from pg_stat_user_functions order by self_time desc limit 14"
