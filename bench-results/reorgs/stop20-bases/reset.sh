#!/bin/bash
cd /work/main
export PGHOST=127.0.0.1 PGUSER=postgres PGOPTIONS='-c client_min_messages=warning'
DB=${DB:-rps_sqltest}
psql -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" && psql -qc "CREATE DATABASE $DB" || exit 1
for f in migrations/versioned/V{1,2}__*.sql; do psql -q -v ON_ERROR_STOP=1 -d $DB -f $f >/dev/null || exit 1; done
psql -q -1 -v ON_ERROR_STOP=1 -d $DB -f migrations/versioned/V3__pair_rows_from_triple_terms.sql >/dev/null || exit 1
for f in migrations/versioned/V{4,5}__*.sql migrations/repeatable/{merge,batch,cascade,snapshot,analytics,reorg,retract,readers}.sql bench-results/reorgs/stop20-bases/gen.sql; do psql -q -v ON_ERROR_STOP=1 -d $DB -f $f >/dev/null || exit 1; done
