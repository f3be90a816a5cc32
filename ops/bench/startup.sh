#!/usr/bin/env bash
# Start-up time and idle memory of `anchorage serve` with a large store (requirement 13 of
# issue 2, item 4). Targets: from process spawn to the port accepting connections <= 300 ms,
# and resident memory (VmRSS) of the idle server <= 50 MB, with 100,000 certificates stored.
#
#   ops/bench/startup.sh                       # 100,000 certificates, 10 start-ups
#   COUNT=0 ops/bench/startup.sh               # baseline: an empty store
#   COUNT=100000 RUNS=20 DATA=/tmp/anc-100k ops/bench/startup.sh   # re-use a filled store
#   BIN=/tmp/anchorage-variant ops/bench/startup.sh   # a binary built elsewhere (no build)
#   COLD=1 ops/bench/startup.sh                # drop the page cache before each start (root)
#   SERVE_ENV="GLIBC_TUNABLES=glibc.malloc.trim_threshold=131072" ops/bench/startup.sh
#                                              # extra environment for `serve` (K=V ...)
#
# Steps: release build; `anchorage init` in a data dir; fill it with COUNT real certificates
# (ops/bench/fill_store.rs: every one approved by the issuance rules, RSA-2048-signed and
# stored with its owner-index and audit entries; 1-2 min for 100,000 on 2 cores); then RUNS
# times: spawn `anchorage serve`, poll-connect to the port every millisecond, record the time,
# wait IDLE seconds, read VmRSS and VmHWM from /proc/PID/status, stop it with SIGTERM.
# The page cache is warm (a restart, not a cold boot) unless COLD=1; the first run is listed
# separately.
# A DATA dir that already holds a store is re-used as it is (no init, no fill).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
COUNT=${COUNT:-100000}
RUNS=${RUNS:-10}
IDLE=${IDLE:-2}
TARGET_MS=300
TARGET_RSS_MB=50
export ANCHORAGE_PASSPHRASE=${ANCHORAGE_PASSPHRASE:-startup-bench-passphrase}
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

if [[ -z "${DATA:-}" ]]; then
  WORK=$(mktemp -d /tmp/anchorage-startup-bench.XXXXXX)
  trap '[[ "${KEEP:-0}" == 1 ]] && echo "kept $WORK" || rm -rf "$WORK"' EXIT
  DATA="$WORK/data"
fi
if [[ ! -d "$DATA/store" ]]; then
  echo "==== init + fill $DATA with $COUNT certificates"
  "$BIN" --data-dir "$DATA" init --managed-domain direct.example.com >/dev/null
  if [[ "$COUNT" -gt 0 ]]; then
    cargo bench --quiet --bench fill_store -- --data-dir "$DATA" --count "$COUNT"
  fi
else
  echo "==== re-using $DATA"
fi
# Lists every record with the current binary: also proves the store is readable by it.
count=$("$BIN" --data-dir "$DATA" -o json cert list |
  jq -r 'if type == "array" then length else "unreadable: \(.message)" end')
echo "store: $count certificates, $(du -sh "$DATA/store" | cut -f1) on disk"
[[ "$count" =~ ^[0-9]+$ ]] || { echo "the store in $DATA cannot be read by this build: refill it" >&2; exit 1; }

echo "==== $RUNS start-ups (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
[[ -z "${SERVE_ENV:-}" ]] || echo "serve environment: $SERVE_ENV"
python3 - "$BIN" "$DATA" "$RUNS" "$IDLE" "$TARGET_MS" "$TARGET_RSS_MB" "${COLD:-0}" "${SERVE_ENV:-}" <<'PY'
import os, signal, socket, statistics, subprocess, sys, time

binary, data, runs, idle, target_ms, target_mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
cold = sys.argv[7] == "1"
env = dict(os.environ)
env.update(kv.split("=", 1) for kv in sys.argv[8].split())

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[k] = v.strip()
    return out

def mb(v):
    """/proc reports kB (KiB); the targets are in MB (10^6 bytes)."""
    return int(v.split()[0]) * 1024 / 1e6

times, rss, hwm, anon = [], [], [], []
for i in range(runs):
    port = free_port()
    if cold:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "--data-dir", data, "serve", "--listen", f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
            break
        except OSError:
            if p.poll() is not None:
                sys.exit("serve exited: " + p.stderr.read().decode())
            time.sleep(0.001)
    ms = (time.perf_counter() - t0) * 1000
    time.sleep(idle)
    st = status(p.pid)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)
    times.append(ms)
    rss.append(mb(st["VmRSS"]))
    hwm.append(mb(st["VmHWM"]))
    anon.append(mb(st["RssAnon"]))
    print(f"run {i + 1:2}: listening after {ms:7.1f} ms; after {idle:g} s idle VmRSS {rss[-1]:6.1f} MB "
          f"(anon {anon[-1]:.1f}, file {mb(st['RssFile']):.1f}), peak VmHWM {hwm[-1]:6.1f} MB, "
          f"{st['Threads']} threads")

def summary(xs):
    s = sorted(xs)
    return f"min {s[0]:.1f}, median {statistics.median(s):.1f}, max {s[-1]:.1f}"

print("==== result")
print(f"start-up to listening (ms): first {times[0]:.1f}; all {runs}: {summary(times)}")
print(f"idle VmRSS (MB):           {summary(rss)}")
print(f"peak VmHWM (MB):           {summary(hwm)}")
median_ms = statistics.median(times)
median_mb = statistics.median(rss)
print(f"{'PASS' if median_ms <= target_ms else 'FAIL'}: start-up median {median_ms:.1f} ms (target <= {target_ms:g} ms)")
print(f"{'PASS' if median_mb <= target_mb else 'FAIL'}: idle RSS median {median_mb:.1f} MB (target <= {target_mb:g} MB)")
PY
echo "(load after: $(cut -d' ' -f1-3 /proc/loadavg))"
