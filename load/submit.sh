#!/usr/bin/env bash
# Load run for submissions: five-item JP_Bundle_CLINS collection bundles (a Patient and five lab
# results), fully validated, each a new unit (its own Bundle-ID and insured person), posted to
# $submit by 32 concurrent clients: first flat out (wrk, for throughput), then at a fixed
# offered rate (loadgen, for the latency at that rate: RATE=1000 per second in all by default,
# for FIXED_SECONDS=10). Targets only 127.0.0.1; bounded by DURATION and FIXED_SECONDS.
#
#   load/submit.sh [sqlite|postgres|both]     (default both; DURATION=20s by default)
#   PERF_DATA=/tmp/submit.perf load/submit.sh sqlite   also records a CPU profile of the gateway
#                                                      (perf, call graphs) during the run
set -euo pipefail
cd "$(dirname "$0")/.."
engines=${1:-both}
duration=${DURATION:-20s}
connections=${CONNECTIONS:-32}
rate=${RATE:-1000}
fixed_seconds=${FIXED_SECONDS:-10}
port=${PORT:-18081}
pg_admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}
template=fixtures/valid/clins-five-labresults.json

if ! command -v wrk >/dev/null; then
  echo "installing wrk" >&2
  (apt-get install -y wrk >/dev/null 2>&1 || sudo apt-get install -y wrk >/dev/null)
fi
cargo build --release -p gateway -p loadgen >&2
# SERVER_BIN: another build to measure (GATEWAY_* variables are the gateway's own settings)
bin=${SERVER_BIN:-${CARGO_TARGET_DIR:-target}/release/gateway}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# The template with placeholders the Lua script fills per request: a fresh Bundle-ID and a
# fresh insured-person number, so that every request is a new unit of a new patient.
python3 - "$template" "$work/template.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
# keep the institution and year, vary the in-facility part
institution_year = b["identifier"]["value"].rsplit("^", 1)[0]
b["identifier"]["value"] = institution_year + "^load-@N@"
for e in b["entry"]:
    r = e["resource"]
    if r["resourceType"] == "Patient":
        for i in r["identifier"]:
            if i["system"] == "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID":
                i["value"] = i["value"].split(":")[0] + "::@N@:"
json.dump(b, open(sys.argv[2], "w"), ensure_ascii=False, separators=(",", ":"))
PY
cat >"$work/submit.lua" <<LUA
local f = io.open("$work/template.json"); local template = f:read("*a"); f:close()
local threads, counter, thread_id = 0, 0, 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args) thread_id = tid end
function request()
  counter = counter + 1
  local n = tostring(thread_id * 100000000 + counter)
  local body = template:gsub("@N@", n)
  return wrk.format("POST", "/fhir/\$submit", {["Content-Type"] = "application/fhir+json"}, body)
end
local bad = 0
function response(status) if status ~= 201 then bad = bad + 1; if bad < 3 then print("unexpected status " .. status) end end end
LUA

# CPU seconds each of the gateway's threads has used, by thread name: "name seconds" lines.
thread_cpu() {
  for t in /proc/$1/task/*; do
    echo "$(cat "$t/comm") $(cut -d' ' -f1 "$t/schedstat")"
  done | awk '{cpu[$1] += $2 / 1e9} END {for (n in cpu) printf "%s %.3f\n", n, cpu[n]}' | sort
}

# 512-byte sectors written to the machine's disks so far (whole disks, not partitions).
disk_sectors_written() {
  awk '$3 ~ /^(vd[a-z]+|sd[a-z]+|xvd[a-z]+|nvme[0-9]+n[0-9]+)$/ {s += $10} END {print s + 0}' /proc/diskstats
}

run() { # $1 engine label, $2 database url
  GATEWAY_LISTEN=127.0.0.1:$port GATEWAY_DATABASE_URL=$2 GATEWAY_PACKAGES=../shared/fhir-packages:../shared/terminology \
    GATEWAY_LOG=warn $bin serve >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  echo "== $1: \$submit five-item collection bundles, $connections connections, $duration"
  thread_cpu $server >"$work/cpu.before"
  local profiler=
  if [[ -n ${PERF_DATA:-} ]]; then
    (sleep 2; perf record -q -F 499 --call-graph dwarf,32768 -p $server -o "$PERF_DATA" -- sleep 6 2>/dev/null) &
    profiler=$!
  fi
  head -1 /proc/stat >"$work/machine.before"
  disk_sectors_written >"$work/disk.before"
  /usr/bin/time -o "$work/wrk.cpu" -f "%U %S" \
    wrk -t2 -c"$connections" -d"$duration" --latency -s "$work/submit.lua" "http://127.0.0.1:$port"
  head -1 /proc/stat >"$work/machine.after"
  disk_sectors_written >"$work/disk.after"
  thread_cpu $server >"$work/cpu.after"
  [[ -z $profiler ]] || wait $profiler
  institution=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["identifier"]["value"].split("^")[0])' "$template")
  curl -s "http://127.0.0.1:$port/fhir/\$submissions?institution=$institution&_count=0" | python3 -c \
    'import json,sys; p=json.load(sys.stdin)["parameter"]; print("stored outcomes:", {x["part"][0]["valueCode"]: x["part"][1]["valueInteger"] for x in p if x["name"]=="count"})' \
    | tee "$work/outcomes"
  # Per accepted submission: where the gateway's CPU went, by thread (the database server's own
  # processes are not counted), and the whole machine over the run (both cores): who else used
  # it (wrk, the kernel's network work, the database server), how much was left idle or taken by
  # the hypervisor (steal), and what reached the disk.
  python3 - "$work" "$(getconf CLK_TCK)" <<'PY'
import ast, sys
work, hz = sys.argv[1], int(sys.argv[2])
accepted = ast.literal_eval(open(f"{work}/outcomes").read().split(":", 1)[1].strip()).get("accepted", 0) or 1
ms = lambda seconds: f"{1000 * seconds / accepted:.2f} ms"
threads = lambda f: {n: float(s) for n, s in (l.split() for l in open(f))}
before, after = threads(f"{work}/cpu.before"), threads(f"{work}/cpu.after")
used = {n: after[n] - before.get(n, 0) for n in after if after[n] - before.get(n, 0) > 0.01}
print("gateway CPU per accepted submission:", ", ".join(f"{n} {ms(s)}" for n, s in sorted(used.items(), key=lambda x: -x[1])))
fields = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
ticks = lambda f: dict(zip(fields, map(int, open(f).read().split()[1:9])))
d = {k: ticks(f"{work}/machine.after")[k] - ticks(f"{work}/machine.before")[k] for k in fields}
wrk = sum(map(float, open(f"{work}/wrk.cpu").read().split()[-2:]))
sectors = int(open(f"{work}/disk.after").read()) - int(open(f"{work}/disk.before").read())
print(f"machine per accepted submission: busy {ms((d['user'] + d['nice'] + d['system'] + d['irq'] + d['softirq']) / hz)}"
      f" (of which wrk {ms(wrk)}), idle {ms((d['idle'] + d['iowait']) / hz)}, steal {ms(d['steal'] / hz)};"
      f" written to disk {sectors * 512 / 1024 / accepted:.0f} KB")
PY
  echo "== $1: \$submit at a fixed $rate/s from $connections clients, ${fixed_seconds}s"
  "${CARGO_TARGET_DIR:-target}/release/loadgen" "http://127.0.0.1:$port/fhir/\$submit" --method POST \
    --body-file "$work/template.json" --expect-status 201 --connections "$connections" \
    --rate "$(python3 -c "print($rate / $connections)")" --duration "$fixed_seconds"
  kill $server; wait $server 2>/dev/null || true
}

if [[ $engines == sqlite || $engines == both ]]; then
  run sqlite "sqlite://$work/load.db"
fi
if [[ $engines == postgres || $engines == both ]]; then
  db=gw_load_submit_$$
  psql "$pg_admin" -qc "CREATE DATABASE $db" >/dev/null
  run postgres "${pg_admin%/*}/$db"
  psql "$pg_admin" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
fi
