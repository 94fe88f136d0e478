#!/bin/bash
# Stop 25 experiment: live.sh (stop 23) alternating two engine binaries, OLD and NEW, ROUNDS
# times, at RATE events/s (one per message), NO_WORKER unless WORKER=1. Per run: CPU line,
# batches, mean events per batch and batches of at most 64 events, share of events committed within 50 / 100 / 250 ms.
D=$(dirname $0)/../stop23-analytics
for r in $(seq 1 ${ROUNDS:-2}); do for b in OLD NEW; do
  bin=${!b}; export ENGINE_PROC=$(basename $bin)
  if [ -z "$WORKER" ]; then export NO_WORKER=1; fi
  out=$(RATE=${RATE:-10000} EVENTS=${EVENTS:-100000} ENGINE=$bin bash $D/live.sh 2>&1)
  python3 - "$b" "$out" <<'PY'
import re,sys
b,out=sys.argv[1],sys.argv[2]
cpu=[l for l in out.splitlines() if l.startswith('cpu ')]
m=open('/tmp/live-engine.metrics').read()
def val(pat):
    r=re.search(pat,m); return float(r[1]) if r else float('nan')
n=val(r'batch_events_count (\S+)'); s=val(r'batch_events_sum (\S+)')
tot=val(r'commit_latency_seconds_count (\S+)')
share={le:val(r'commit_latency_seconds_bucket\{le="%s"\} (\S+)'%le)/tot for le in ('0.05','0.1','0.25')}
small=val(r'batch_events_bucket\{le="64"\} (\S+)')
print(f"{b}: {cpu[0] if cpu else ''} | batches {n:.0f} mean {s/n:.0f} ev, {small:.0f} of <=64 | within 50/100/250 ms: "+' / '.join(f"{v*100:.1f}%" for v in share.values()))
PY
done; done
