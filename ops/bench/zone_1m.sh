#!/usr/bin/env bash
# Zone publication in one very large domain (issue 14 requirement 4: "no full scans on the
# service path"). Targets: a revocation's or an issuance's zone update <= 100 ms in a
# 1,000,000-certificate domain; the CLI revoke does not wait seconds for the zone; the first
# start after a large import does not pin hundreds of MB.
#
#   ops/bench/zone_1m.sh                          # 1,000,000 certificates (~8 min of fill)
#   COUNT=100000 SHARDS=410 ops/bench/zone_1m.sh  # smaller store, the 1M shard size (~244)
#   DATA=/tmp/zone-1m ops/bench/zone_1m.sh        # re-use a filled store (no init, no fill)
#   ROUNDS=9 FULL_RUNS=3 KEEP=1 ...               # rounds of each measurement; keep the dir
#   FIRST_START=1 DATA=...                        # a store filled apart: measure its first start
#
# Steps: release build; `anchorage init` with one managed domain, `[publish]` mode = "zone"
# and shards = SHARDS (0: chosen from the zone size, 4096 at 1M); fill it with COUNT real
# certificates, all in that domain (ops/bench/fill_store.rs, which writes them with their
# indexes and publishes nothing);
# then, in this order:
#  1. first start after the fill: spawn `anchorage serve`, time to the port accepting, VmRSS
#     after IDLE s, then wait for the first sweep's "published zone" log line (it finds the
#     pending changes of the import and builds the zone) and read VmRSS/VmHWM again after
#     IDLE s more; stop it (only when this run filled the store: a re-used DATA has had its
#     first start);
#  2. `publish zone` rebuilding every file (the zone files are deleted first): wall time and
#     max RSS (/usr/bin/time), file sizes; FULL_RUNS times;
#  3. ops/bench/zone_change.rs: ROUNDS revocations and ROUNDS issuances, each followed by the
#     timed zone update as `serve` runs it (publish_queued_zones), median;
#  4. `anchorage cert revoke` at the console (opens the store, unlocks the CA, re-signs the
#     CRL, updates the zone), wall time, 3 serials.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
COUNT=${COUNT:-1000000}
SHARDS=${SHARDS:-0}
ROUNDS=${ROUNDS:-7}
FULL_RUNS=${FULL_RUNS:-2}
IDLE=${IDLE:-2}
DOMAIN=direct.example.com
export ANCHORAGE_PASSPHRASE=${ANCHORAGE_PASSPHRASE:-zone-bench-passphrase}
export RUST_LOG=${RUST_LOG:-info}

echo "==== machine"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "nproc:   $(nproc)"
echo "cpu:     $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "commit:  ${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')}"
echo "load:    $(uptime)"

# BIN=path/anchorage BENCH_DIR=target/release/deps: built binaries, no build (the bench
# executables are found there by name).
if [[ -z "${BIN:-}" ]]; then
  echo "==== build (release)"
  cargo build --release --bin anchorage --quiet
  cargo bench --no-run --quiet --bench fill_store --bench zone_change 2>/dev/null
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
  BIN="$TARGET_DIR/release/anchorage"
fi
# A bench executable: the newest built one under BENCH_DIR, else through cargo.
bench() {
  local name=$1
  shift
  local exe
  exe=$(ls -t "${BENCH_DIR:-/nonexistent}/$name"-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
  if [[ -n "$exe" ]]; then "$exe" "$@"; else cargo bench --quiet --bench "$name" -- "$@"; fi
}

FRESH=0
if [[ -z "${DATA:-}" ]]; then
  WORK=$(mktemp -d /tmp/anchorage-zone-bench.XXXXXX)
  trap '[[ "${KEEP:-0}" == 1 ]] && echo "kept $WORK" || rm -rf "$WORK"' EXIT
  DATA="$WORK/data"
fi
if [[ ! -d "$DATA/store" ]]; then
  echo "==== init + fill $DATA with $COUNT certificates in $DOMAIN"
  RUST_LOG=warn "$BIN" --data-dir "$DATA" init --managed-domain "$DOMAIN" >/dev/null
  # init wrote the whole configuration, [publish] included: set its mode and shard count.
  sed -i -e 's/^mode = "fragment"$/mode = "zone"/' -e "s/^shards = [0-9]*\$/shards = $SHARDS/" \
    "$DATA/anchorage.toml"
  grep -q '^mode = "zone"$' "$DATA/anchorage.toml" && grep -q "^shards = $SHARDS\$" "$DATA/anchorage.toml" ||
    { echo "could not set [publish] mode and shards in $DATA/anchorage.toml" >&2; exit 1; }
  t0=$(date +%s.%N)
  RUST_LOG=warn bench fill_store --data-dir "$DATA" --count "$COUNT"
  echo "fill: $(echo "$(date +%s.%N) - $t0" | bc) s"
  FRESH=1
else
  echo "==== re-using $DATA"
fi
echo "store: $(du -sh "$DATA/store" | cut -f1) on disk; load $(cut -d' ' -f1-3 /proc/loadavg)"
ZONE="$DATA/published/dns/$DOMAIN.zone"

if [[ "$FRESH" == 1 || "${FIRST_START:-0}" == 1 ]]; then
  echo "==== 1. first start after the fill (load $(cut -d' ' -f1-3 /proc/loadavg))"
  python3 - "$BIN" "$DATA" "$IDLE" <<'PY'
import os, signal, socket, subprocess, sys, time, threading
binary, data, idle = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
def status(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon"):
            out[k] = int(v.split()[0]) * 1024 / 1e6
    return out
t0 = time.perf_counter()
p = subprocess.Popen([binary, "--data-dir", data, "serve", "--listen", f"127.0.0.1:{port}"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
published = threading.Event()
def watch():
    for line in p.stderr:
        if "published zone" in line:
            published.set()
threading.Thread(target=watch, daemon=True).start()
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.05).close(); break
    except OSError:
        if p.poll() is not None: sys.exit("serve exited")
        time.sleep(0.001)
listen = time.perf_counter() - t0
time.sleep(idle)
a = status(p.pid)
print(f"listening after {listen*1000:.0f} ms; after {idle:g} s: VmRSS {a['VmRSS']:.1f} MB (anon {a['RssAnon']:.1f})")
ok = published.wait(1800)
swept = time.perf_counter() - t0
time.sleep(idle)
b = status(p.pid)
print(f"first sweep {'published the zone' if ok else 'DID NOT FINISH'} {swept:.1f} s after spawn; "
      f"{idle:g} s later: VmRSS {b['VmRSS']:.1f} MB (anon {b['RssAnon']:.1f}), peak VmHWM {b['VmHWM']:.1f} MB")
p.send_signal(signal.SIGTERM); p.wait(timeout=30)
PY
fi

echo "==== 2. publish zone, every file rebuilt ($FULL_RUNS runs)"
for i in $(seq "$FULL_RUNS"); do
  rm -rf "$ZONE" "$ZONE.d"
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
  RUST_LOG=warn /usr/bin/time -f "run $i: %e s wall, %U s user, max RSS %M kB" \
    "$BIN" --data-dir "$DATA" -o json publish zone --domain "$DOMAIN" |
    jq -c '.zones[0] | {records, serial, written}'
done
echo "zone file $(stat -c %s "$ZONE") bytes; shards: $(ls "$ZONE.d" 2>/dev/null | wc -l) files, $(du -sb "$ZONE.d" 2>/dev/null | cut -f1) bytes"

echo "==== 3. one change's zone update ($ROUNDS revocations, $ROUNDS issuances; load $(cut -d' ' -f1-3 /proc/loadavg))"
OUT=$(RUST_LOG=warn bench zone_change --data-dir "$DATA" --rounds "$ROUNDS")
echo "$OUT"
SPARE=$(echo "$OUT" | sed -n 's/^spare serials: //p')

echo "==== 4. anchorage cert revoke at the console (load $(cut -d' ' -f1-3 /proc/loadavg))"
for s in $SPARE; do
  RUST_LOG=warn /usr/bin/time -f "cert revoke $s: %e s wall, max RSS %M kB" \
    "$BIN" --data-dir "$DATA" cert revoke "$s" >/dev/null
done
echo "(load after: $(cut -d' ' -f1-3 /proc/loadavg))"
