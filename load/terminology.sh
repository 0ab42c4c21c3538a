#!/usr/bin/env bash
# Load run for terminology operations over HTTP: $translate and $validate-code at 32 concurrent
# clients (SQLite database; the operations do not touch it). 127.0.0.1 only, bounded by DURATION.
# Two runs each: at a fixed rate (loadgen: 32 clients, RATE requests/s each), where latency is
# the operation's own, and flat out (wrk), where the load generator shares the two cores and the
# latency is mostly queueing. `/healthz` at the same fixed rate first: the floor that the
# machine, the HTTP stack and the load generator set.
#
#   load/terminology.sh       (DURATION=15 seconds, RATE=100 per client by default)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-15}
duration=${duration%s}   # "10s" works too
connections=${CONNECTIONS:-32}
rate=${RATE:-100}
port=${PORT:-18082}
if ! command -v wrk >/dev/null; then
  (apt-get install -y wrk >/dev/null 2>&1 || sudo apt-get install -y wrk >/dev/null)
fi
cargo build --release -p gateway -p loadgen >&2
bin=${CARGO_TARGET_DIR:-target}/release/gateway
loadgen=${CARGO_TARGET_DIR:-target}/release/loadgen
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
GATEWAY_LISTEN=127.0.0.1:$port GATEWAY_DATABASE_URL="sqlite://$work/t.db" GATEWAY_LOG=warn $bin serve >"$work/server.log" 2>&1 &
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port/fhir"
translate="$base/ConceptMap/\$translate?system=http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS&code=3H015000002326101&target=http://loinc.org"
validate="$base/ValueSet/\$validate-code?url=http://jpfhir.jp/fhir/core/ValueSet/JP_AllergyIntolerance_VS&system=http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS&code=J9FC11310000"
healthz="http://127.0.0.1:$port/healthz"
echo "== healthz at a fixed rate"
$loadgen --connections "$connections" --rate "$rate" --duration "$duration" "$healthz"
for op in translate validate; do
  url=${!op}
  echo "== $op at a fixed rate"
  $loadgen --connections "$connections" --rate "$rate" --duration "$duration" "$url"
  echo "== $op flat out: $connections connections, ${duration}s"
  wrk -t2 -c"$connections" -d"${duration}s" --latency "$url" | grep -E "Requests/sec|50%|90%|99%"
done
