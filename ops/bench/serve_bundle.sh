#!/usr/bin/env bash
# Serving what relying parties download (issue 3 requirement 9, issue 14 requirement 2): the
# 50-anchor bundle GET /bundles/provider-test.p7b, the issuing CA's CRL GET /crl/issuing.crl and
# its certificate GET /ca/issuing.cer, on loopback with wrk, against nginx (Debian package)
# serving the same bytes with the same headers (content type, Cache-Control, the security
# headers, ETag, Last-Modified) from the same machine in the same run, for 200 responses and for
# 304 (If-None-Match) responses. Target: anchorage's requests/s >= TARGET x nginx's (1.0) in
# every case.
#
#   ops/bench/serve_bundle.sh                       # 10 s per run, 3 rounds, 2 threads, 32 connections
#   DURATION=20 CONNECTIONS=64 ops/bench/serve_bundle.sh
#
# wrk, the server under test and the other server share the 2 cores; each server is measured
# alone (the other idle). nginx runs with worker_processes auto (2 here), its defaults
# otherwise, access log off (anchorage logs nothing per request at level warn).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=2
ANCHORS=50
TARGET=${TARGET:-1.00}

SUDO=(); [[ $EUID -ne 0 ]] && SUDO=(sudo)
for pkg in wrk nginx; do
  if ! command -v "$pkg" >/dev/null 2>&1 && ! [[ -x /usr/sbin/$pkg ]]; then
    echo "installing $pkg (Debian package)" >&2
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d.bench >/dev/null
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null ||
      { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null; }
    "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d.bench
  fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "==== machine"
echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "nproc:  $(nproc)   cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
echo "nginx:  $($NGINX -v 2>&1)"
echo "run:    $THREADS threads, $CONNECTIONS connections, ${DURATION}s each, median of $ROUNDS alternating rounds"

cargo build --release --bin anchorage --quiet
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/anchorage"
WORK=$(mktemp -d /tmp/anchorage-serve-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "==== set-up: $ANCHORS anchors (openssl), bundle provider-test"
export ANCHORAGE_PASSPHRASE="serve-bench-$RANDOM-$RANDOM-$RANDOM"
export RUST_LOG=warn
APORT=$(port); NPORT=$(port)
"$BIN" --data-dir "$WORK/d" init --managed-domain direct.example.com --public-url "http://127.0.0.1:$APORT" >/dev/null
: >"$WORK/all.pem"
for i in $(seq 1 $ANCHORS); do
  openssl req -x509 -new -newkey rsa:2048 -nodes -keyout /dev/null -subj "/O=Member $i/CN=Member $i Root" \
    -days 3650 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null >>"$WORK/all.pem"
done
openssl crl2pkcs7 -nocrl -certfile "$WORK/all.pem" -outform DER -out "$WORK/all.p7b"
ids=$("$BIN" --data-dir "$WORK/d" -o json anchor submit --bundle provider-test "$WORK/all.p7b" | python3 -c 'import json,sys; print(" ".join(map(str, json.load(sys.stdin)["ids"])))')
for id in $ids; do "$BIN" --data-dir "$WORK/d" anchor approve "$id" >/dev/null; done

"$BIN" --data-dir "$WORK/d" serve --listen "127.0.0.1:$APORT" >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$APORT/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
mkdir -p "$WORK/www/bundles" "$WORK/www/crl" "$WORK/www/ca"
RESOURCES=(bundles/provider-test.p7b crl/issuing.crl ca/issuing.cer)
for r in "${RESOURCES[@]}"; do curl -fs "http://127.0.0.1:$APORT/$r" -o "$WORK/www/$r"; done
SIZE=$(stat -c %s "$WORK/www/bundles/provider-test.p7b")
echo "bundle: $(openssl pkcs7 -inform DER -in "$WORK/www/bundles/provider-test.p7b" -print_certs | grep -c '^subject=') anchors, $SIZE bytes"

# nginx workers drop to an unprivileged user: let them read the copy.
chmod 755 "$WORK"; chmod -R a+rX "$WORK/www"
cat >"$WORK/nginx.conf" <<NGINX
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  types { application/pkcs7-mime p7b; application/pkix-crl crl; application/pkix-cert cer; }
  sendfile on;
  etag on;
  server {
    listen 127.0.0.1:$NPORT;
    root $WORK/www;
    # add_header in a location replaces the server's: each location repeats the set.
    location /bundles/ { add_header Cache-Control "public, max-age=300, must-revalidate" always;
      add_header Content-Security-Policy "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'" always;
      add_header X-Content-Type-Options nosniff always; add_header X-Frame-Options DENY always;
      add_header Referrer-Policy no-referrer always; add_header Cross-Origin-Opener-Policy same-origin always; }
    location /crl/ { add_header Cache-Control "public, max-age=300" always;
      add_header Content-Security-Policy "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'" always;
      add_header X-Content-Type-Options nosniff always; add_header X-Frame-Options DENY always;
      add_header Referrer-Policy no-referrer always; add_header Cross-Origin-Opener-Policy same-origin always; }
    location /ca/ { add_header Cache-Control "public, max-age=3600" always;
      add_header Content-Security-Policy "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'" always;
      add_header X-Content-Type-Options nosniff always; add_header X-Frame-Options DENY always;
      add_header Referrer-Policy no-referrer always; add_header Cross-Origin-Opener-Policy same-origin always; }
  }
}
NGINX
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon off;' &
PIDS+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$NPORT/bundles/provider-test.p7b" -o /dev/null && break; sleep 0.05; done
cmp <(curl -fs "http://127.0.0.1:$NPORT/bundles/provider-test.p7b") "$WORK/www/bundles/provider-test.p7b"

etag() { curl -fsI "$1" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p'; }
cat >"$WORK/inm.lua" <<'LUA'
wrk.headers["If-None-Match"] = os.getenv("BENCH_ETAG")
local statuses = {}
function response(status) statuses[status] = (statuses[status] or 0) + 1 end
LUA

run() { # name url etag-or-empty
  local out
  if [[ -n "$3" ]]; then
    out=$(BENCH_ETAG="$3" wrk -t$THREADS -c$CONNECTIONS -d"${DURATION}s" -s "$WORK/inm.lua" "$2")
  else
    out=$(wrk -t$THREADS -c$CONNECTIONS -d"${DURATION}s" "$2")
  fi
  local rps; rps=$(sed -n 's/^Requests\/sec: *//p' <<<"$out")
  local bad; bad=$(sed -n 's/^ *Non-2xx or 3xx responses: *//p' <<<"$out")
  echo "$1: $rps req/s${bad:+, non-2xx/3xx: $bad}" >&2
  echo "$rps"
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
status_of() { curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $2" "$1"; }

echo "headers, anchorage then nginx (bundle):"
curl -fsI "http://127.0.0.1:$APORT/bundles/provider-test.p7b" | tr -d '\r' | sort | sed 's/^/  a: /'
curl -fsI "http://127.0.0.1:$NPORT/bundles/provider-test.p7b" | tr -d '\r' | sort | sed 's/^/  n: /'

echo "==== wrk (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
results=()
for r in "${RESOURCES[@]}"; do
  A_URL="http://127.0.0.1:$APORT/$r"; N_URL="http://127.0.0.1:$NPORT/$r"
  cmp <(curl -fs "$A_URL") <(curl -fs "$N_URL")
  A_ETAG=$(etag "$A_URL"); N_ETAG=$(etag "$N_URL")
  [[ $(status_of "$A_URL" "$A_ETAG") == 304 && $(status_of "$N_URL" "$N_ETAG") == 304 ]] ||
    { echo "$r: conditional requests do not give 304 on both servers" >&2; exit 1; }
  # ROUNDS alternating rounds (nginx first, then anchorage first, ...); the median of each.
  n200s=(); a200s=(); n304s=(); a304s=()
  for round in $(seq 1 "$ROUNDS"); do
    if (( round % 2 )); then
      n200s+=("$(run "nginx 200 $r" "$N_URL" "")"); a200s+=("$(run "anchorage 200 $r" "$A_URL" "")")
      n304s+=("$(run "nginx 304 $r" "$N_URL" "$N_ETAG")"); a304s+=("$(run "anchorage 304 $r" "$A_URL" "$A_ETAG")")
    else
      a200s+=("$(run "anchorage 200 $r" "$A_URL" "")"); n200s+=("$(run "nginx 200 $r" "$N_URL" "")")
      a304s+=("$(run "anchorage 304 $r" "$A_URL" "$A_ETAG")"); n304s+=("$(run "nginx 304 $r" "$N_URL" "$N_ETAG")")
    fi
  done
  n200=$(median "${n200s[@]}"); a200=$(median "${a200s[@]}")
  n304=$(median "${n304s[@]}"); a304=$(median "${a304s[@]}")
  results+=("$r" "$a200" "$n200" "$a304" "$n304")
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$TARGET" "${results[@]}" <<'PY'
import sys
target = float(sys.argv[1]); rest = sys.argv[2:]
ok = True
for i in range(0, len(rest), 5):
    r = rest[i]; a200, n200, a304, n304 = map(float, rest[i + 1:i + 5])
    for what, a, n in (("200", a200, n200), ("304", a304, n304)):
        ratio = a / n
        ok &= ratio >= target
        print(f"{r} {what}: anchorage {a:,.0f} req/s, nginx {n:,.0f} req/s, ratio {ratio:.2f} (target >= {target:.2f}) {'PASS' if ratio >= target else 'FAIL'}")
print("RESULT", "PASS" if ok else "FAIL")
PY
