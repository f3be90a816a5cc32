#!/usr/bin/env bash
# Bundles at scale (issue 14 requirement 5): 10,000 distinct member anchors submitted and
# approved through the CLI on one data directory, bundle provider-test (signed: .p7b + .p7m).
# Targets: submission and approval of all 10,000 in <= 5 minutes; <= 50 MB of bundle versions
# in the store.
#
#   ops/bench/anchors_10k.sh                         # 10,000 anchors, approvals 1,000 ids per call
#   ANCHORS=2000 BATCH=500 ops/bench/anchors_10k.sh
#
# Phases, each timed:
#   generate   10,000 self-signed P-256 CA certificates (python3 cryptography; not counted)
#   submit     one `anchorage anchor submit FILE` process per anchor, as an operator scripts
#              it (FILES=n: n files per process); the time per anchor of the first and of the
#              last SAMPLE submissions shows whether a submission costs more in a full bundle
#              (the O(1) check; SAMPLE must be a multiple of FILES)
#   approve    `anchorage anchor approve ID...` with BATCH ids per call: one version per call
# Then the bundle versions' bytes are read from a backup of the store (the trees
# bundle_versions + bundle_certs, keys and values), beside `du` of the store directory, and
# openssl counts the anchors in the served .p7b.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ANCHORS=${ANCHORS:-10000}
BATCH=${BATCH:-1000}
SAMPLE=${SAMPLE:-500}
FILES=${FILES:-1}
BUNDLE=provider-test

echo "==== machine"
echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "nproc:  $(nproc)   cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg)"
echo "run:    $ANCHORS anchors, $FILES file(s) per submit process, approvals $BATCH ids per call"

# ANCHORAGE_BIN: a release binary already built (skips the build, e.g. while cargo is busy).
if [[ -n "${ANCHORAGE_BIN:-}" ]]; then
  BIN=$ANCHORAGE_BIN
else
  cargo build --release --bin anchorage --quiet
  BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/anchorage"
fi
WORK=$(mktemp -d /tmp/anchorage-anchors-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export ANCHORAGE_PASSPHRASE="anchors-bench-$RANDOM-$RANDOM-$RANDOM"
export RUST_LOG=warn
D="$WORK/d"
A=("$BIN" --data-dir "$D")
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

echo "==== generate ($ANCHORS P-256 CA certificates, python3 cryptography)"
t=$(now)
python3 - "$ANCHORS" "$WORK/anchors" <<'PY'
import datetime, os, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
n, out = int(sys.argv[1]), sys.argv[2]
os.makedirs(out)
now = datetime.datetime.now(datetime.timezone.utc)
usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                      data_encipherment=False, key_agreement=False, key_cert_sign=True,
                      crl_sign=True, encipher_only=False, decipher_only=False)
for i in range(1, n + 1):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"Member {i} HISP"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"Member {i} Trust Anchor")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    with open(os.path.join(out, f"{i:05d}.pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
PY
echo "generated in $(since "$t") s"

"${A[@]}" init --managed-domain direct.example.com >/dev/null
STORE_BEFORE=$(du -sb "$D/store" | cut -f1)

echo "==== submit ($FILES file(s) per CLI process)"
mapfile -t LIST < <(ls "$WORK"/anchors/*.pem)
n=${#LIST[@]}
t=$(now)
i=0
while (( i < n )); do
  (( i == SAMPLE )) && first_sample=$(since "$t")
  (( i == n - SAMPLE )) && last=$(now)
  "${A[@]}" anchor submit --bundle "$BUNDLE" "${LIST[@]:i:FILES}" >/dev/null \
    || { echo "submission of ${LIST[i]} failed"; exit 1; }
  i=$((i + FILES))
done
SUBMIT=$(since "$t")
last_sample=$(since "$last")
"${A[@]}" -o json anchor list --bundle "$BUNDLE" --state pending \
  | python3 -c 'import json,sys; print("\n".join(str(a["id"]) for a in json.load(sys.stdin)))' >"$WORK/ids"
echo "submitted $(wc -l <"$WORK/ids") anchors in $SUBMIT s"
python3 - "$SAMPLE" "$first_sample" "$last_sample" "$ANCHORS" <<'PY'
import sys
n, a, b, total = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print(f"per anchor: first {n}: {a / n * 1000:.1f} ms; last {n} (bundle at {total - n:,}): "
      f"{b / n * 1000:.1f} ms; ratio last/first {b / a:.2f}")
PY

echo "==== approve ($BATCH ids per call)"
t=$(now)
calls=0
while read -r -a ids; do
  "${A[@]}" -o json anchor approve "${ids[@]}" >"$WORK/approved.json"
  calls=$((calls + 1))
done < <(xargs -n "$BATCH" <"$WORK/ids")
APPROVE=$(since "$t")
echo "approved in $APPROVE s ($calls calls)"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("last call published:", d["published"])' "$WORK/approved.json"
echo "TOTAL submit + approve: $(python3 -c "print(f'{$SUBMIT + $APPROVE:.1f}')") s (target <= 300 s)"

echo "==== store"
"${A[@]}" -o json bundle list | python3 -c '
import json, sys
for b in json.load(sys.stdin):
    if b["name"] == "'"$BUNDLE"'": print("bundle:", b["name"], "version", b["version"], "anchors", b["anchors"])'
"${A[@]}" backup --out "$WORK/backup" >/dev/null
python3 - "$WORK/backup" <<'PY'
import base64, json, sys
raw = open(sys.argv[1], "rb").read()
body = json.loads(raw[raw.index(b"\n") + 1:])
sizes = {}
for t in body["trees"]:
    name = base64.b64decode(t["name"]).decode()
    sizes[name] = (len(t["entries"]), sum(len(base64.b64decode(k)) + len(base64.b64decode(v)) for k, v in t["entries"]))
versions = sizes.get("bundle_versions", (0, 0))
certs = sizes.get("bundle_certs", (0, 0))
anchors = sizes.get("anchors", (0, 0))
print(f"bundle_versions: {versions[0]} records, {versions[1] / 1e6:.1f} MB")
print(f"bundle_certs:    {certs[0]} records, {certs[1] / 1e6:.1f} MB")
print(f"BUNDLE VERSIONS TOTAL: {(versions[1] + certs[1]) / 1e6:.1f} MB (target <= 50 MB)")
print(f"(anchors tree, the submissions themselves: {anchors[0]} records, {anchors[1] / 1e6:.1f} MB)")
PY
echo "store directory: $(( ($(du -sb "$D/store" | cut -f1) - STORE_BEFORE) / 1000000 )) MB more than after init (sled's log, before compaction)"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${A[@]}" serve --listen "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
curl -fs "http://127.0.0.1:$PORT/bundles/$BUNDLE.p7b" -o "$WORK/current.p7b"
curl -fs "http://127.0.0.1:$PORT/bundles/$BUNDLE.p7m" -o "$WORK/current.p7m"
kill "$SERVE"; wait "$SERVE" 2>/dev/null || true
echo "served .p7b: $(stat -c %s "$WORK/current.p7b") bytes, openssl counts $(openssl pkcs7 -inform DER -in "$WORK/current.p7b" -print_certs | grep -c '^subject=') anchors"
echo "served .p7m: $(stat -c %s "$WORK/current.p7m") bytes, openssl cms -verify -noverify: $(openssl cms -verify -noverify -inform DER -in "$WORK/current.p7m" -out "$WORK/content" 2>&1 | tail -1); content = .p7b: $(cmp -s "$WORK/content" "$WORK/current.p7b" && echo yes || echo NO)"
