#!/usr/bin/env bash
# Load run for terminology operations over HTTP: $translate and $validate-code at 32 concurrent
# clients (SQLite database; the operations do not touch it). 127.0.0.1 only, bounded by DURATION.
#
#   load/terminology.sh       (DURATION=15s by default)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-15s}
connections=${CONNECTIONS:-32}
port=${PORT:-18082}
if ! command -v wrk >/dev/null; then
  (apt-get install -y wrk >/dev/null 2>&1 || sudo apt-get install -y wrk >/dev/null)
fi
cargo build --release -p gateway >&2
bin=${CARGO_TARGET_DIR:-target}/release/gateway
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
GATEWAY_LISTEN=127.0.0.1:$port GATEWAY_DATABASE_URL="sqlite://$work/t.db" GATEWAY_LOG=warn $bin serve >"$work/server.log" 2>&1 &
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port/fhir"
translate="$base/ConceptMap/\$translate?system=http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS&code=3H015000002326101&target=http://loinc.org"
validate="$base/ValueSet/\$validate-code?url=http://jpfhir.jp/fhir/core/ValueSet/JP_AllergyIntolerance_VS&system=http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS&code=J9FC11310000"
echo "== \$translate (JLAC10 -> LOINC), $connections connections, $duration"
wrk -t2 -c"$connections" -d"$duration" --latency "$translate"
echo "== ValueSet \$validate-code (J-FAGY), $connections connections, $duration"
wrk -t2 -c"$connections" -d"$duration" --latency "$validate"
