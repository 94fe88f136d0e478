#!/usr/bin/env bash
# The test suite: starts local PostgreSQL and Redis if needed, then runs every test of the
# workspace against them. Each test uses its own database and stream names.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/services.sh
# The alert rules' unit tests need promtool; they fail without it.
PROMTOOL=${PROMTOOL:-$(./scripts/promtool.sh)}
export PROMTOOL
# The crash tests run the real engine binary: build it first (test builds do not).
cargo build --workspace --bins
# Every test binary runs even after a failure, so one run shows every problem.
cargo test --workspace --all-targets --no-fail-fast "$@"
