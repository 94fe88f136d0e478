#!/bin/bash
# Stop 25 experiment: one engine backfill of EVENTS events (loadgen workload, seed 42) into a
# fresh database rps_hot migrated by the engine and then altered by SQL (a file of sql/).
# Prints the engine's rate, PostgreSQL's CPU over the run (every postgres process), the
# position table's updates (HOT of them), its size, the readers' index size, and the top
# functions by self time (ms).
SQL=${SQL:-sql/current.sql}; E=/work/main/target/release; DB=rps_hot
cd $(dirname $0)
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" postgres 2>/dev/null
redis-cli --scan --pattern "$DB:*" | xargs -r redis-cli unlink >/dev/null
S=$DB:intuition_atom_created,$DB:intuition_redeemed,$DB:intuition_deposited,$DB:intuition_share_price_changed,$DB:intuition_triple_created
U="postgres://postgres@127.0.0.1:5432/$DB"
run() { ${ENGINE:-$E/redis-postgres-sync} --database-url $U --redis-url redis://127.0.0.1:6379 --streams $S --create-streams --term-updates-stream $DB:term_updates --backfill --exit-when-idle --progress off --metrics-addr 127.0.0.1:0 "$@" 2>&1; }
run > /dev/null   # creates and migrates the database
psql -qh 127.0.0.1 -U postgres $DB -f $SQL -c "ALTER DATABASE $DB SET track_functions = 'all'" > /dev/null
$E/loadgen generate --events ${EVENTS:-1000000} --redis-url redis://127.0.0.1:6379 --stream-prefix $DB: > /dev/null 2>&1
P0=$(python3 ../stop23-analytics/pgcpu.py postgres reaped)
run | grep -E "done" | tee /tmp/hot-done.txt | sed -E "s/.*(events=[0-9]+).*(rate=.*)/\1 \2/" | tr "\n" " "
echo "pg cpu $(echo "$(python3 ../stop23-analytics/pgcpu.py postgres reaped) - $P0" | bc)"
psql -h 127.0.0.1 -U postgres $DB -Atc "select 'position upd '||n_tup_upd||' hot '||n_tup_hot_upd||' ins '||n_tup_ins||', heap '||pg_size_pretty(pg_relation_size('position'))||', readers index '||pg_size_pretty(pg_relation_size('position_vault_active_idx'))||', pkey '||pg_size_pretty(pg_relation_size('position_pkey')) from pg_stat_user_tables where relname='position'"
psql -h 127.0.0.1 -U postgres $DB -Atc "select funcname||' '||calls||' '||round(self_time::numeric) from pg_stat_user_functions order by self_time desc limit 6" | tr "\n" ";"; echo
