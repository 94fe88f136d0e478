#!/usr/bin/env bash
# Print the path of a promtool binary (for the alert-rule unit tests), providing one if
# needed: the one on PATH, else Debian's `prometheus` package unpacked under
# .services/prometheus (downloaded, never installed, so no Prometheus server starts).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "promtool: $*" >&2; }

if command -v promtool >/dev/null; then command -v promtool; exit 0; fi
dir=$PWD/.services/prometheus
if [ ! -x "$dir/usr/bin/promtool" ]; then
  command -v apt-get >/dev/null || { log "no promtool and no apt-get: install Prometheus' promtool"; exit 1; }
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  log "downloading Debian's prometheus package for its promtool"
  (cd "$download" && { apt-get download -q prometheus >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get download -q prometheus >/dev/null; }; })
  mkdir -p "$dir"
  dpkg-deb -x "$download"/prometheus_*.deb "$dir"
fi
"$dir/usr/bin/promtool" --version >/dev/null
echo "$dir/usr/bin/promtool"
