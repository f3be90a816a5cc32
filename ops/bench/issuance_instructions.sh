#!/usr/bin/env bash
# Where the server's CPU goes per certificate issued through the HTTP API, counted in
# instructions (callgrind) rather than timed: the count does not depend on the load of a
# shared machine, so two builds can be compared while other work runs. It complements
# ops/bench/http_issuance.sh (the rate against openssl, which needs a quiet machine).
#
#   ops/bench/issuance_instructions.sh                  # release build, 200 certificates
#   COUNT=400 CLIENTS=16 ops/bench/issuance_instructions.sh
#   BIN=/tmp/anchorage-variant ops/bench/issuance_instructions.sh
#   TOP=60 KEEP=1 ...                                   # longer report, keep the files
#
# Steps: release build; `anchorage init` (as http_issuance.sh: key reuse allowed, no rate
# limits); `anchorage serve` under `valgrind --tool=callgrind` with instrumentation off; WARMUP
# requests; instrumentation on; COUNT requests from CLIENTS threads (python3 http.client, a new
# address per request); instrumentation off. Prints instructions per certificate in all, in the
# RSA private-key operation (`rsa_default_private_transform`, the signature), the ratio of
# everything else to it, and the functions with the most inclusive instructions.
# Kernel time (fsync, network) is not counted: callgrind sees user space only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
COUNT=${COUNT:-200}
WARMUP=${WARMUP:-20}
CLIENTS=${CLIENTS:-2}
TOP=${TOP:-40}
for t in valgrind callgrind_control callgrind_annotate jq openssl curl python3; do
  command -v "$t" >/dev/null 2>&1 || { echo "$t is required (Debian: valgrind)" >&2; exit 2; }
done

echo "==== machine"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit:  ${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')}"
echo "load:    $(uptime)"
if [[ -z "${BIN:-}" ]]; then
  cargo build --release --bin anchorage --quiet
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
  BIN="$TARGET_DIR/release/anchorage"
fi
echo "binary:  $BIN"

WORK=$(mktemp -d /tmp/anchorage-instr.XXXXXX)
DATA="$WORK/data"
SERVER_PID=
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ "${KEEP:-0}" == 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export ANCHORAGE_PASSPHRASE="instr-bench-passphrase-$RANDOM-$RANDOM"
export RUST_LOG=${RUST_LOG:-warn}
# shellcheck source=ops/bench/issuance_setup.sh
source ops/bench/issuance_setup.sh

# serve re-executes itself once to set this glibc tunable (src/main.rs); set it here so
# valgrind keeps the process it started.
GLIBC_TUNABLES=glibc.malloc.trim_threshold=131072 \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out" \
  "$BIN" --data-dir "$DATA" serve --listen "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 1200); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.25
done
curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$WORK/serve.log"; exit 1; }

load() { # $1 prefix, $2 count
  python3 - "$PORT" "$TOKEN" "$WORK/bench.csr" "$1" "$2" "$CLIENTS" <<'PY'
import http.client, json, sys, threading
port, token, csr_path, prefix, count, clients = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
csr = open(csr_path).read()
bad = []
def run(t):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=600)
    for n in range(t, count, clients):
        body = json.dumps({"address": f"{prefix}-{n}@direct.example.com", "usage": "dual", "csr": csr,
                           "subscriber": {"name": "Bench"},
                           "proofing": {"method": "in-person", "evidence_reference": "bench"}})
        c.request("POST", "/api/v1/certificates", body,
                  {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        if r.status != 201: bad.append(r.status)
threads = [threading.Thread(target=run, args=(t,)) for t in range(clients)]
[t.start() for t in threads]; [t.join() for t in threads]
if bad: sys.exit(f"{len(bad)} requests did not give 201: {bad[:5]}")
PY
}
echo "==== warm-up ($WARMUP), then $COUNT certificates from $CLIENTS clients under callgrind"
load warm "$WARMUP"
callgrind_control -i on "$SERVER_PID" >/dev/null
load bench "$COUNT"
callgrind_control -i off "$SERVER_PID" >/dev/null
callgrind_control -d "$SERVER_PID" >/dev/null
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
echo "(load after: $(cut -d' ' -f1-3 /proc/loadavg))"

# The dump with the measured requests is the largest file callgrind wrote.
OUT=$(ls -S "$WORK"/callgrind.out* | head -1)
callgrind_annotate --inclusive=yes --threshold=100 "$OUT" >"$WORK/inclusive.txt" 2>/dev/null
total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$WORK/inclusive.txt")
rsa=$(awk '/rsa_default_private_transform/ {gsub(",", "", $1); print $1; exit}' "$WORK/inclusive.txt")
rsa=${rsa:-0}
echo "==== result"
awk -v t="$total" -v r="$rsa" -v n="$COUNT" 'BEGIN {
  printf "instructions per certificate: %.0f (user space, every thread)\n", t / n
  printf "  RSA private-key operation:  %.0f\n", r / n
  printf "  everything else:            %.0f = %.2f x the RSA operation\n", (t - r) / n, (r > 0 ? (t - r) / r : 0)
}'
echo "==== top $TOP functions by inclusive instructions (per certificate)"
awk -v n="$COUNT" '/^ *[0-9,]+ / && !/PROGRAM TOTALS/ {v=$1; gsub(",", "", v); $1=""; printf "%12.0f %s\n", v / n, substr($0, 1, 160)}' \
  "$WORK/inclusive.txt" | head -"$TOP"
