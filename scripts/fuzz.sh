#!/usr/bin/env bash
# Runs every fuzz target for a short time, one at a time (the machine has two
# cores and fuzzing uses all of them), starting from the committed seed
# corpora in testdata/fuzz/. A crash stops the script with go test's report;
# the failing input is written to testdata/fuzz/<FuzzName>/ — commit it with
# the fix so it stays a regression test.
#
#   scripts/fuzz.sh          # 10 s each
#   FUZZTIME=2m scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-10s}"
# Two workers: the default (GOMAXPROCS) would take every core of a shared machine.
parallel="${FUZZ_PARALLEL:-2}"

targets=(
  "./internal/replicate FuzzVerify"
  "./internal/replicate FuzzVerifyRoundTrip"
  "./internal/replicate FuzzParseKeys"
  "./internal/replicate FuzzParseTraining"
  "./internal/training FuzzParseProgress"
  "./internal/training FuzzApplySequence"
  "./internal/config FuzzLoad"
)

# Every Fuzz function in the tree must be listed above.
found=$(grep -rhoE '^func (Fuzz[A-Za-z0-9_]+)\(f \*testing\.F\)' --include='*_test.go' internal cmd | sed -E 's/^func (Fuzz[A-Za-z0-9_]+).*/\1/' | sort)
listed=$(printf '%s\n' "${targets[@]}" | awk '{print $2}' | sort)
if [ "$found" != "$listed" ]; then
  echo "scripts/fuzz.sh: the list of targets is out of date"
  diff <(echo "$listed") <(echo "$found") || true
  exit 1
fi

for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "=== fuzz $name ($pkg, $fuzztime)"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel "$parallel" "$pkg"
done
echo "fuzz: ${#targets[@]} targets, $fuzztime each: no failure"
