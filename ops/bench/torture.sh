#!/usr/bin/env bash
# Parser torture at scale (issue 13, requirement 6): runs the proptest properties of
# tests/it/torture.rs (bundle reader, upload classifier, CSR path) in release mode at
# PROPTEST_CASES cases each, and prints the lines ops/BENCHMARKS.md records: commit, machine,
# load, cases, time, failures. `cargo test` runs the same properties at proptest's default of
# 256 cases each.
#
#   ops/bench/torture.sh                 # 3 properties x 340,000 = 1,020,000 cases
#   CASES=10000 ops/bench/torture.sh     # a quick look
#
# Extra arguments go to the test binary (e.g. `--test-threads=1`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

CASES=${CASES:-340000}
PROPERTIES=3
export PROPTEST_CASES=$CASES

cargo test --release --test it --no-run 2>&1 | tail -n 1

echo "commit:  $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src tests || echo ' (modified)')"
echo "machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, before the run)"
echo "cases:   $PROPERTIES properties x $CASES = $((PROPERTIES * CASES))"
start=$(date +%s.%N)
status=0
cargo test --release --test it torture:: -- "$@" 2>&1 | grep -E '^test |test result|panicked|minimal failing' || status=$?
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v n="$((PROPERTIES * CASES))" \
  'BEGIN { printf "time:    %.1f s (%.0f cases/s)\n", e - s, n / (e - s) }'
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (after)"
exit "$status"
