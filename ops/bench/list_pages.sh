#!/usr/bin/env bash
# Listings are pages, not scans (issue 14, requirement 3). Targets, with 1,000,000 certificates
# stored: one `GET /api/v1/certificates` page <= 50 ms and <= 50 MB server growth;
# `anchorage cert list -o json` of all of them <= 30 s with <= 100 MB peak RSS.
#
#   ops/bench/list_pages.sh                          # 1,000,000 certificates (fill: ~8 min)
#   COUNT=200000 ops/bench/list_pages.sh             # a smaller store
#   DATA=/tmp/anc-1m KEEP=1 ops/bench/list_pages.sh  # re-use (or keep) a filled data dir
#   ROUNDS=21 LIMIT=1000 ops/bench/list_pages.sh     # page fetches per kind, page size
#   COUNT=0 BIN=target/debug/anchorage ops/bench/list_pages.sh   # smoke test of the script
#
# Steps: release build; `anchorage init` and ops/bench/fill_store.rs with COUNT certificates
# (unless DATA already holds a store); an admin token; `anchorage serve`; then ROUNDS times
# each: the first page, a deep page (the cursor of serial 7e: the last ~1.6 % of the
# serial space), both with limit=LIMIT and again at the server's default page size (after
# the server's RSS has settled), and for the anchor the same deep page by the deprecated offset when
# OFFSET_ANCHOR=1 (O(offset): slow on purpose). Server VmRSS before and after the page
# fetches, and VmHWM. Then `anchorage cert list -o json` through the running server (paging
# by cursor), and again on the store with serve stopped: wall time, peak RSS (/usr/bin/time
# -v), and the entry count (jq). Medians of the rounds; the load average is printed before
# and after, as the machine has 2 cores shared with builds.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
COUNT=${COUNT:-1000000}
ROUNDS=${ROUNDS:-21}
LIMIT=${LIMIT:-1000}
export ANCHORAGE_PASSPHRASE=${ANCHORAGE_PASSPHRASE:-list-bench-passphrase}
export RUST_LOG=${RUST_LOG:-warn}

echo "==== machine"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "nproc:   $(nproc)"
echo "cpu:     $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "commit:  ${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')}"
echo "load:    $(uptime)"

if [[ -z "${BIN:-}" ]]; then
  echo "==== build (release)"
  cargo build --release --bin anchorage --quiet
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
  BIN="$TARGET_DIR/release/anchorage"
fi
echo "binary:  $BIN"

WORK=$(mktemp -d /tmp/anchorage-list-bench.XXXXXX)
SERVE_PID=
cleanup() {
  [[ -n "$SERVE_PID" ]] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
if [[ -z "${DATA:-}" ]]; then
  DATA=/tmp/anchorage-list-bench-data-$COUNT
  [[ "${KEEP:-0}" == 1 ]] || trap 'cleanup; rm -rf "$DATA"' EXIT
fi
if [[ ! -d "$DATA/store" ]]; then
  echo "==== init + fill $DATA with $COUNT certificates"
  "$BIN" --data-dir "$DATA" init --managed-domain direct.example.com >/dev/null
  t0=$(date +%s)
  if [[ "$COUNT" -gt 0 ]]; then
    cargo bench --quiet --bench fill_store -- --data-dir "$DATA" --count "$COUNT"
  fi
  echo "filled in $(( $(date +%s) - t0 )) s"
else
  echo "==== re-using $DATA"
fi
echo "store: $(du -sh "$DATA/store" | cut -f1) on disk"
TOKEN=$("$BIN" --data-dir "$DATA" -o json token create --role admin | jq -r .token)

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" --data-dir "$DATA" serve --listen "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$WORK/serve.log"; exit 1; }

echo "==== API pages (limit $LIMIT, $ROUNDS rounds each; load before: $(cut -d' ' -f1-3 /proc/loadavg))"
python3 - "$PORT" "$TOKEN" "$SERVE_PID" "$ROUNDS" "$LIMIT" "${OFFSET_ANCHOR:-0}" "$COUNT" <<'PY'
import base64, http.client, statistics, sys, time

port, token, pid, rounds, limit, offset_anchor, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1", int(sys.argv[7])

def status():
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024 / 1e6
    return out

def get(path):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=600)
    t0 = time.perf_counter()
    c.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t0) * 1000
    assert r.status == 200, (r.status, body[:300])
    return ms, body, dict(r.getheaders())

# Start-up work (migrations, sweeps) may still run after /healthz answers: wait until the
# server's RSS has been flat (within 1 MB) for 3 s, at most 120 s, before the baseline.
settle, flat, t_settle = status()["VmRSS"], 0, time.time()
while flat < 3 and time.time() - t_settle < 120:
    time.sleep(1)
    now_rss = status()["VmRSS"]
    flat = flat + 1 if abs(now_rss - settle) < 1 else 0
    settle = now_rss
before = status()
print(f"server before (settled after {time.time() - t_settle:.0f} s): VmRSS {before['VmRSS']:.1f} MB, VmHWM {before['VmHWM']:.1f} MB")
# A deep cursor: serials are random 16 bytes with a first byte 01..7f, so the cursor of the
# serial 7e lands near the end of the walk (the last ~1.6 % of the store).
deep = base64.urlsafe_b64encode(b"7e").decode().rstrip("=")
kinds = [("first page", f"/api/v1/certificates?limit={limit}"),
         ("deep cursor page", f"/api/v1/certificates?limit={limit}&after={deep}"),
         ("default-size page", "/api/v1/certificates"),
         ("default deep page", f"/api/v1/certificates?after={deep}")]
results = {}
for name, path in kinds:
    ms_all = []
    for _ in range(rounds):
        ms, body, headers = get(path)
        ms_all.append(ms)
    n = body.count(b'"serial"')
    results[name] = ms_all
    print(f"{name:18}: {n} entries, {len(body)/1e6:.2f} MB body, total header {headers.get('x-total-count', '-')}; "
          f"ms min {min(ms_all):.1f}, median {statistics.median(ms_all):.1f}, max {max(ms_all):.1f}")
if offset_anchor:
    off = max(count - 2 * limit, 0)
    ms, body, _ = get(f"/api/v1/certificates?limit={limit}&offset={off}")
    print(f"anchor: deprecated offset={off} page: {ms:.1f} ms (O(offset)); "
          f"ratio to the deep cursor page median: {ms / statistics.median(results['deep cursor page']):.0f} x")
after = status()
growth = after["VmRSS"] - before["VmRSS"]
# The peak while pages were served: VmHWM when it rose during the fetches, else (the start-up
# peak was higher) the RSS after them.
peak = (after["VmHWM"] if after["VmHWM"] > before["VmHWM"] else after["VmRSS"]) - before["VmRSS"]
print(f"server after:  VmRSS {after['VmRSS']:.1f} MB (growth {growth:+.1f} MB), VmHWM {after['VmHWM']:.1f} MB "
      f"(peak growth while serving pages {peak:+.1f} MB)")
for label, names in ((f"limit={limit}", ("first page", "deep cursor page")),
                     ("default size", ("default-size page", "default deep page"))):
    worst = max(statistics.median(results[n]) for n in names)
    print(f"{'PASS' if worst <= 50 else 'FAIL'}: one page ({label}) median {worst:.1f} ms (target <= 50 ms)")
print(f"{'PASS' if peak <= 50 else 'FAIL'}: server growth {peak:.1f} MB at peak (target <= 50 MB)")
PY

measure() { # label, then the command; prints wall time, peak RSS and the entry count
  local label=$1; shift
  /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/list.json" 2>"$WORK/list.err" || {
    cat "$WORK/list.err"; exit 1; }
  local wall rss n
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$WORK/time.txt")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/time.txt")
  n=$(jq length "$WORK/list.json")
  echo "$label: $n entries, wall $wall, peak RSS $((rss / 1024)) MiB ($(python3 -c "print(f'{$rss*1024/1e6:.1f}')") MB), output $(du -h "$WORK/list.json" | cut -f1)"
  python3 - "$wall" "$rss" "$label" <<'PY'
import sys
wall, rss, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
parts = [float(p) for p in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
mb = rss * 1024 / 1e6
print(f"{'PASS' if secs <= 30 else 'FAIL'}: {label} {secs:.1f} s (target <= 30 s); "
      f"{'PASS' if mb <= 100 else 'FAIL'}: peak {mb:.1f} MB (target <= 100 MB)")
PY
}

echo "==== cert list -o json through the running server (load: $(cut -d' ' -f1-3 /proc/loadavg))"
measure "cert list via server" "$BIN" --data-dir "$DATA" -o json cert list
grep VmHWM "/proc/$SERVE_PID/status" | sed 's/^/server after the listing: /'
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=

echo "==== cert list -o json on the store, serve stopped (load: $(cut -d' ' -f1-3 /proc/loadavg))"
measure "cert list on the store" "$BIN" --data-dir "$DATA" -o json cert list
echo "(load after: $(cut -d' ' -f1-3 /proc/loadavg))"
