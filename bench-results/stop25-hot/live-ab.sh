#!/bin/bash
# Stop 25 experiment: stop 23's live.sh (engine binary alone, fresh database, one event per
# message, RATE events/s) with each SQL variant of sql/ applied right after the engine
# migrated; alternated ROUNDS times. PostgreSQL CPU and the share of events within 50 / 100 ms.
for r in $(seq 1 ${ROUNDS:-2}); do for v in ${VARIANTS:-current full_index3}; do
  out=$(NO_WORKER=1 RATE=${RATE:-10000} EVENTS=${EVENTS:-100000} SQL_OVERRIDE=$(pwd)/sql/$v.sql bash ../stop23-analytics/live.sh 2>&1)
  python3 - "$v" "$out" <<'PY'
import re,sys
v,out=sys.argv[1],sys.argv[2]
cpu=[l for l in out.splitlines() if l.startswith('cpu ')]
m=open('/tmp/live-engine.metrics').read()
val=lambda p: float(re.search(p,m)[1])
tot=val(r'commit_latency_seconds_count (\S+)')
share=lambda le: val(r'commit_latency_seconds_bucket.le="%s". (\S+)' % le) / tot * 100
print(f"{v}: {cpu[0] if cpu else ''} | within 50/100 ms: {share('0.05'):.1f}% / {share('0.1'):.1f}%")
PY
done; done
