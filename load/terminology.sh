#!/usr/bin/env bash
# Load run for terminology operations over HTTP: $translate and $validate-code at 32 concurrent
# clients (SQLite database; the operations do not touch it). 127.0.0.1 only, bounded by DURATION.
# Two runs each: at a fixed rate (hey: 32 clients, RATE requests/s each), where latency is the
# operation's own, and flat out (wrk), where the load generator shares the two cores and the
# latency is mostly queueing.
#
#   load/terminology.sh       (DURATION=15s, RATE=100 per client by default)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-15s}
connections=${CONNECTIONS:-32}
rate=${RATE:-100}
port=${PORT:-18082}
for tool in wrk hey; do
  if ! command -v $tool >/dev/null; then
    (apt-get install -y $tool >/dev/null 2>&1 || sudo apt-get install -y $tool >/dev/null)
  fi
done
cargo build --release -p gateway >&2
bin=${CARGO_TARGET_DIR:-target}/release/gateway
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
GATEWAY_LISTEN=127.0.0.1:$port GATEWAY_DATABASE_URL="sqlite://$work/t.db" GATEWAY_LOG=warn $bin serve >"$work/server.log" 2>&1 &
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port/fhir"
translate="$base/ConceptMap/\$translate?system=http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS&code=3H015000002326101&target=http://loinc.org"
validate="$base/ValueSet/\$validate-code?url=http://jpfhir.jp/fhir/core/ValueSet/JP_AllergyIntolerance_VS&system=http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS&code=J9FC11310000"
for op in translate validate; do
  url=${!op}
  echo "== $op at a fixed rate: $connections clients x $rate requests/s, $duration"
  hey -z "$duration" -c "$connections" -q "$rate" "$url" | grep -E "Requests/sec|50%|90%|99%|\[200\]|\[[1-5][0-9][0-9]\]"
  echo "== $op flat out: $connections connections, $duration"
  wrk -t2 -c"$connections" -d"$duration" --latency "$url" | grep -E "Requests/sec|50%|90%|99%"
done
