#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, user postgres, trust auth) and Redis (127.0.0.1:6379)
# are running. Starts them if installed, installs the Debian packages if not (needs root),
# and as a last resort starts throwaway instances under .services/ in this checkout.
# Safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PGHOST=127.0.0.1 PGPORT=5432 REDIS_PORT=6379

log() { echo "services: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

pg_up() { psql -h $PGHOST -p $PGPORT -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p $REDIS_PORT ping 2>/dev/null)" = PONG ]; }

wait_for() { # name, check function
  for _ in $(seq 1 60); do "$2" && return 0; sleep 0.5; done
  log "$1 did not come up"; return 1
}

apt_install() {
  command -v apt-get >/dev/null || { log "no apt-get: install $* yourself"; return 1; }
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { as_root apt-get update -q >/dev/null 2>&1 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

start_pg_cluster() {
  command -v pg_lsclusters >/dev/null || return 1
  local line; line=$(pg_lsclusters -h 2>/dev/null | head -1) || return 1
  [ -n "$line" ] || return 1
  set -- $line
  log "starting PostgreSQL cluster $1/$2"
  as_root pg_ctlcluster --skip-systemctl-redirect "$1" "$2" start >/dev/null 2>&1 || true
  wait_for PostgreSQL pg_up
}

start_pg_throwaway() {
  local bin; bin=$(pg_bindir); [ -n "$bin" ] || return 1
  local dir=$ROOT/.services/pg
  local run_as=(); [ "$(id -u)" = 0 ] && run_as=(runuser -u postgres --)
  mkdir -p "$dir"; [ "$(id -u)" = 0 ] && chown -R postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    log "initializing a throwaway PostgreSQL in $dir"
    "${run_as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
  fi
  "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-h $PGHOST -p $PGPORT -k $dir" start >/dev/null
  wait_for PostgreSQL pg_up
}

ensure_pg() {
  pg_up && return 0
  if [ -z "$(pg_bindir)" ]; then apt_install postgresql postgresql-client; fi
  start_pg_cluster || start_pg_throwaway
  # Tests and the engine connect as postgres over TCP; make sure root can too.
  psql -h $PGHOST -U postgres -d postgres -Atqc "select 1" >/dev/null
}

ensure_redis() {
  redis_up && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  local dir=$ROOT/.services/redis; mkdir -p "$dir"
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT --save "" --appendonly no \
    --dir "$dir" --logfile "$dir/redis.log" >/dev/null
  wait_for Redis redis_up
}

command -v psql >/dev/null || apt_install postgresql-client
command -v redis-cli >/dev/null || apt_install redis-tools
ensure_pg
ensure_redis
log "PostgreSQL on $PGHOST:$PGPORT and Redis on 127.0.0.1:$REDIS_PORT are up"
