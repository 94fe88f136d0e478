#!/bin/bash
# Stop 25 experiment: one engine backfill of EVENTS events into a fresh database rps_expl with
# auto_explain logging every merge statement over MS ms (nested, analyzed, with buffers), so
# a batch's merge can be read node by node. The plans go to the server log; this prints the
# log lines from the run's start.
E=/work/main/target/release; DB=rps_expl; LOG=/var/log/postgresql/postgresql-15-main.log
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" postgres 2>/dev/null
redis-cli --scan --pattern "$DB:*" | xargs -r redis-cli unlink >/dev/null
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" postgres
for s in "session_preload_libraries=auto_explain" "auto_explain.log_min_duration=${MS:-200}" "auto_explain.log_nested_statements=on" "auto_explain.log_analyze=on" "auto_explain.log_buffers=on"; do psql -qh 127.0.0.1 -U postgres -c "ALTER DATABASE $DB SET $s" postgres; done
$E/loadgen generate --events ${EVENTS:-300000} --redis-url redis://127.0.0.1:6379 --stream-prefix $DB: > /dev/null 2>&1
S=$DB:intuition_atom_created,$DB:intuition_redeemed,$DB:intuition_deposited,$DB:intuition_share_price_changed,$DB:intuition_triple_created
start=$(wc -l < $LOG)
$E/redis-postgres-sync --database-url postgres://postgres@127.0.0.1:5432/$DB --redis-url redis://127.0.0.1:6379 --streams $S --create-streams --term-updates-stream $DB:term_updates --backfill --exit-when-idle --progress off --metrics-addr 127.0.0.1:0 2>&1 | grep done | cut -c1-200
tail -n +$((start + 1)) $LOG > /tmp/explain.log; wc -l /tmp/explain.log
