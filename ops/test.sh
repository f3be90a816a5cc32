#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust installed:
# installs the independent tools the integration tests check our output
# against (openssl, pkilint, BIND's checkers, Knot, OpenLDAP), then runs
# fmt, clippy and cargo test. Extra arguments go to `cargo test`.
set -euo pipefail
# Some sandboxes (this CI machine among them) have a regular file at
# /dev/null: every `>/dev/null` writes into it, and whatever reads it back
# gets that text (cargo's `rustc -` probe compiled stale warnings from it).
# Put the character device back when we may; either way stdin is an empty
# pipe, so nothing below reads leftovers.
if [[ ! -c /dev/null ]]; then
  if mknod -m 666 /dev/null.anchorage c 1 3 2>/dev/null && mv -f /dev/null.anchorage /dev/null; then
    echo "note: /dev/null was not a character device; recreated it"
  else
    rm -f /dev/null.anchorage 2>/dev/null || true
    echo "warning: /dev/null is not a character device and cannot be recreated" >&2
  fi
fi
exec < <(:)

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
START=$SECONDS

section() { printf '\n==== %s (t=%ss)\n' "$*" "$((SECONDS - START))"; }

# knotd and slapd live in /usr/sbin, which a non-login PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac
export PATH

SUDO=()
if [[ $EUID -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO=(sudo); else
    echo "not root and no sudo: cannot install Debian packages" >&2; exit 1
  fi
fi

# ---------------------------------------------------------------------------
section "Debian packages"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

missing=()
command -v openssl >/dev/null || missing+=(openssl)
if ! command -v python3 >/dev/null; then
  missing+=(python3 python3-venv)
elif ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian's python3 splits venv/ensurepip out; pyenv's CPython has them.
  missing+=(python3-venv)
fi
# chromium + chromium-driver: the web interface is driven by a real browser (WebDriver).
# strace: a test checks that an acknowledged issuance was fdatasync'ed first.
for pkg in bind9-utils bind9-dnsutils knot nsd slapd ldap-utils chromium chromium-driver strace; do
  installed "$pkg" || missing+=("$pkg")
done

POLICY=/usr/sbin/policy-rc.d
created_policy=0
cleanup() { if [[ $created_policy == 1 ]]; then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  # Tests start their own servers on free ports; the system services the
  # postinst scripts would start are unwanted (and would hold ports 53/389).
  if [[ ! -e $POLICY ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    created_policy=1
  fi
  echo 'slapd slapd/no_configuration boolean true' | "${SUDO[@]}" debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
  cleanup; created_policy=0
else
  echo "all present"
fi

# ---------------------------------------------------------------------------
section "Python venv (pkilint, cryptography, openapi-spec-validator)"

VENV=$ROOT/target/test-tools/venv
# The whole dependency closure is pinned so a new upstream release cannot
# change what the linters report between two runs of the same commit.
PY_REQS=(
  pkilint==0.13.3
  cryptography==50.0.2
  cffi==2.1.1
  iso3166==3.0.0
  iso4217==1.16.20260101
  publicsuffixlist==1.1.2.20261023
  pyasn1==0.6.5
  pyasn1-fasder==0.1.3
  pyasn1_alt_modules==0.4.10
  pycparser==3.12
  python-dateutil==4.0.0
  python-iso639==2026.7.23
  tzdata==2026.6
  validators==0.22.0
  # openapi-spec-validator checks the served /api/v1/openapi.json, and its closure.
  openapi-spec-validator==0.9.0
  annotated-types==0.8.0
  attrs==26.1.0
  jsonschema==4.26.0
  jsonschema-path==0.5.0
  jsonschema-specifications==2025.9.1
  lazy-object-proxy==1.13.0
  openapi-schema-validator==0.9.0
  pathable==0.6.0
  pydantic==2.14.3
  pydantic-settings==2.16.3
  pydantic_core==2.50.4
  python-dotenv==1.2.4
  PyYAML==6.0.3
  referencing==0.37.0
  rfc3339-validator==0.1.4
  rpds-py==2026.9.1
  six==1.17.0
  typing-inspection==0.4.5
  typing_extensions==4.16.0
)
STAMP=$VENV/.anchorage-reqs
want="${PY_REQS[*]}"
if [[ -f $STAMP && "$(cat "$STAMP")" == "$want" ]] \
  && "$VENV/bin/python" -c 'import pkilint, cryptography, openapi_spec_validator' 2>/dev/null; then
  echo "up to date: $VENV"
else
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_REQS[@]}"
  printf '%s' "$want" >"$STAMP"
  echo "created: $VENV"
fi
export ANCHORAGE_TEST_VENV=$VENV
"$VENV/bin/python" -c 'import importlib.metadata as m; print("pkilint", m.version("pkilint"), "/ cryptography", m.version("cryptography"), "/ openapi-spec-validator", m.version("openapi-spec-validator"))'
openssl version

# ---------------------------------------------------------------------------
section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy"
cargo clippy --all-targets -- -D warnings

section "cargo deny (bans, duplicate versions: ops/deny.toml)"
# Advisories need the RustSec database, which cannot be fetched offline: bans only.
CARGO_DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
  echo "installing cargo-deny $CARGO_DENY_VERSION (once per machine)"
  cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION"
fi
cargo deny --config ops/deny.toml --offline check bans

section "cargo test"
cargo test --all-targets "$@"

section "done"
