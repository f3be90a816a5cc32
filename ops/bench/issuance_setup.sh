# Sourced by http_issuance.sh and issuance_instructions.sh: the data directory both issuance
# benchmarks load. Needs BIN, DATA, WORK, PORT and ANCHORAGE_PASSPHRASE; sets TOKEN (a
# registrar token for every domain) and writes $WORK/bench.csr (one RSA-2048 CSR).
#
# The load sends one CSR for every address and one token for every request: lift the
# one-key-per-holder rule (a copy of the profiles) and the per-token rate limits, which are
# not what these measure.
"$BIN" --data-dir "$DATA" init --managed-domain direct.example.com \
  --public-url "http://127.0.0.1:$PORT" >/dev/null
mkdir -p "$WORK/policies"
for f in policies/*.toml; do
  sed 's/^allow_key_reuse = false/allow_key_reuse = true/' "$f" >"$WORK/policies/$(basename "$f")"
done
{ echo "policies_dir = \"$WORK/policies\""
  sed 's/^rate_limit_per_minute = .*/rate_limit_per_minute = 0/; s/^rate_limit_per_day = .*/rate_limit_per_day = 0/' \
    "$DATA/anchorage.toml"; } >"$WORK/config.tmp"
mv "$WORK/config.tmp" "$DATA/anchorage.toml"
TOKEN=$("$BIN" --data-dir "$DATA" -o json token create --role registrar --domain '*' | jq -r .token)
openssl req -new -newkey rsa:2048 -nodes -keyout "$WORK/bench.key" -subj "/CN=bench" \
  -out "$WORK/bench.csr" 2>/dev/null
