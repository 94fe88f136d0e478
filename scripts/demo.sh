#!/usr/bin/env bash
# The main job on local services, end to end, in a namespace of its own:
#   start PostgreSQL and Redis if needed → build → publish the rindexer sample messages and a
#   generated workload to the demo's streams → sync them (migrations apply on start) → let
#   the analytics worker catch up → compare every maintained table with its full-recompute
#   reference view.
# Everything it touches is named after DEMO_NAMESPACE (default rps_demo): the database of
# that name, and the Redis keys "<namespace>:*" (input streams, term updates, dead letters).
# Nothing else on the servers is read or written, whatever DATABASE_URL, STREAMS or
# REDIS_URL say in your environment. Re-running it re-publishes the same events: they are
# recognised as redeliveries and change nothing.
# Settings: DEMO_EVENTS (50000), DEMO_NAMESPACE, DEMO_PG_URL (a server URL without database,
# default postgres://postgres@127.0.0.1:5432), DEMO_REDIS_URL (redis://127.0.0.1:6379).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${DEMO_EVENTS:-50000}
NAMESPACE=${DEMO_NAMESPACE:-rps_demo}
PG_SERVER=${DEMO_PG_URL:-postgres://postgres@127.0.0.1:5432}
export REDIS_URL=${DEMO_REDIS_URL:-redis://127.0.0.1:6379}
export DATABASE_URL="${PG_SERVER%/}/$NAMESPACE"
PREFIX="$NAMESPACE:"
export STREAMS=$(printf "${PREFIX}intuition_%s," atom_created triple_created deposited redeemed share_price_changed)
export STREAMS=${STREAMS%,}
export TERM_UPDATES_STREAM="${PREFIX}term_updates"
export CONSUMER_GROUP=redis-postgres-sync ANALYTICS_GROUP=analytics-worker
# Free ports, so a running engine or worker on 3030/3031 is left alone.
export METRICS_ADDR=127.0.0.1:0 ANALYTICS_METRICS_ADDR=127.0.0.1:0
unset LOADGEN_STREAM_PREFIX

# The URL without its password (userinfo, or a password= parameter).
redacted() { sed -E 's#(://[^:/@]*:).*@#\1***@#; s#(password=)[^ &]*#\1***#g' <<<"$1"; }
echo "== demo namespace: database $(redacted "$DATABASE_URL"), Redis keys ${PREFIX}* on $(redacted "$REDIS_URL")"

# Local services are started (or installed) unless both servers were given.
if [[ -z "${DEMO_PG_URL:-}" || -z "${DEMO_REDIS_URL:-}" ]]; then ./scripts/services.sh; fi
if [[ -n "${DEMO_BIN_DIR:-}" ]]; then
    bin=$DEMO_BIN_DIR   # binaries built already (the tests use their debug build)
else
    echo "== building (release)"
    cargo build --release --quiet --bin redis-postgres-sync --bin analytics-worker --bin loadgen
    bin=target/release
fi

echo "== publishing samples/rindexer-v0.41-real-messages.jsonl (captured from rindexer, a reorg notice included) and $EVENTS generated events to ${PREFIX}intuition_*"
$bin/loadgen feed --file samples/rindexer-v0.41-real-messages.jsonl --stream-prefix "$PREFIX"
$bin/loadgen generate --events "$EVENTS" --seed 1 --stream-prefix "$PREFIX" --redis-url "$REDIS_URL"

echo "== syncing (backfill mode, exits when the streams are drained)"
$bin/redis-postgres-sync --exit-when-idle --backfill --create-streams

echo "== analytics tier: applying the term updates the engine published to $TERM_UPDATES_STREAM"
$bin/analytics-worker --exit-when-idle

echo "== maintained tables vs. reference views (full recompute from the event log)"
$bin/redis-postgres-sync verify --analytics

cat <<NEXT

== what you just saw
The engine read every message from the ${PREFIX}intuition_* streams in large batches, wrote
them to PostgreSQL with binary COPY, merged them with statement-level triggers and ran one
cascade per batch; the worker then refreshed the four analytics tables. Every table above
equals a full recompute from the event log (exit code 0 means all of them).

== what next
  check the demo's database, streams, groups and dead letters:
    export DATABASE_URL=$(redacted "$DATABASE_URL")
    export STREAMS=$STREAMS
    export TERM_UPDATES_STREAM=$TERM_UPDATES_STREAM
    $bin/redis-postgres-sync doctor
  run it live (Ctrl-C stops it after the batch in flight), then watch
  http://127.0.0.1:3030/metrics and http://127.0.0.1:3030/health:
    $bin/redis-postgres-sync            # defaults: database intuition, streams intuition_*
  Prometheus, alert rules and a Grafana dashboard: deploy/ (README → Running it).
  point a real rindexer at it: in rindexer.yaml, under the MultiVault contract,
    streams:
      redis:
        connection_uri: \${REDIS_CONNECTION_URI}
        streams:
          - stream_name: intuition_deposited
            networks: [intuition]
            events:
              - event_name: Deposited
          # … one stream per event: AtomCreated → intuition_atom_created,
          # TripleCreated → intuition_triple_created, Redeemed → intuition_redeemed,
          # SharePriceChanged → intuition_share_price_changed (or set --streams to yours)
  remove the demo: psql -c 'DROP DATABASE $NAMESPACE' and
    redis-cli --scan --pattern '${PREFIX}*' | xargs -r redis-cli del
NEXT
