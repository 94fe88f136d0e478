#!/usr/bin/env bash
# The main job on local default services, end to end:
#   start PostgreSQL and Redis if needed → build → publish the rindexer sample messages and a
#   generated workload to the default streams → sync them (migrations apply on start) →
#   let the analytics worker catch up → compare every maintained table with its full-recompute reference view.
# Re-running it re-publishes the same events: they are recognised as redeliveries and
# change nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${DEMO_EVENTS:-50000}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/intuition}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

./scripts/services.sh
cargo build --release --bin redis-postgres-sync --bin analytics-worker --bin loadgen
bin=target/release

echo "== publishing samples/rindexer-messages.jsonl and $EVENTS generated events to Redis"
$bin/loadgen feed --file samples/rindexer-messages.jsonl
$bin/loadgen generate --events "$EVENTS" --seed 1

# The URL without its password (userinfo, or a password= parameter).
redacted() { sed -E 's#(://[^:/@]*:).*@#\1***@#; s#(password=)[^ &]*#\1***#g' <<<"$1"; }
echo "== syncing into $(redacted "$DATABASE_URL")"
$bin/redis-postgres-sync --exit-when-idle --backfill

echo "== analytics tier: applying the term updates the engine published"
$bin/analytics-worker --exit-when-idle

echo "== maintained tables vs. reference views (full recompute from the event log)"
$bin/redis-postgres-sync verify --analytics
