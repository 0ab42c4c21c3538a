#!/usr/bin/env bash
# Load run for the REST foundation: creates/s and read latency at 32 concurrent clients,
# on SQLite and PostgreSQL. Targets only 127.0.0.1; every run is bounded by DURATION.
#
#   load/rest.sh [sqlite|postgres|both]     (default both; DURATION=20s by default)
#
# Installs wrk (Debian package) if it is missing, builds the release binary, starts a
# gateway on a fresh database, runs, stops it and removes the database.
set -euo pipefail
cd "$(dirname "$0")/.."
engines=${1:-both}
duration=${DURATION:-20s}
connections=${CONNECTIONS:-32}
port=${PORT:-18080}
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}

if ! command -v wrk >/dev/null; then
  echo "installing wrk" >&2
  (apt-get install -y wrk >/dev/null 2>&1 || sudo apt-get install -y wrk >/dev/null)
fi
cargo build --release -p gateway >&2
bin=${CARGO_TARGET_DIR:-target}/release/gateway
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start() { # $1 database url
  GATEWAY_LISTEN=127.0.0.1:$port GATEWAY_DATABASE_URL=$1 GATEWAY_PACKAGES=../shared/fhir-packages:../shared/terminology \
    GATEWAY_LOG=warn GATEWAY_DB_POOL_SIZE=${POOL:-16} $bin serve >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
    sleep 0.1
  done
  cat "$work/server.log" >&2; exit 1
}

run() { # $1 engine label, $2 database url
  start "$2"
  cat >"$work/create.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.headers["Prefer"] = "return=minimal"
wrk.body = '{"resourceType":"Patient","identifier":[{"system":"urn:load:mrn","value":"x"}],"name":[{"family":"山田","given":["太郎"]}],"gender":"male","birthDate":"1970-01-01"}'
LUA
  echo "== $1: create Patient, $connections connections, $duration"
  wrk -t2 -c"$connections" -d"$duration" --latency -s "$work/create.lua" "http://127.0.0.1:$port/fhir/Patient" | tee "$work/create.txt"
  id=$(curl -s -X POST -H 'Content-Type: application/fhir+json' -d '{"resourceType":"Patient","active":true}' \
       "http://127.0.0.1:$port/fhir/Patient" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  echo "== $1: read Patient/$id, $connections connections, $duration"
  wrk -t2 -c"$connections" -d"$duration" --latency "http://127.0.0.1:$port/fhir/Patient/$id" | tee "$work/read.txt"
  kill $server; wait $server 2>/dev/null || true
}

if [[ $engines == sqlite || $engines == both ]]; then
  run sqlite "sqlite://$work/load.db"
fi
if [[ $engines == postgres || $engines == both ]]; then
  db=gw_load_$$
  psql "$pg_admin" -qc "CREATE DATABASE $db" >/dev/null
  run postgres "${pg_admin%/*}/$db"
  psql "$pg_admin" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
fi
