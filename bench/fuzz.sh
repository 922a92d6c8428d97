#!/usr/bin/env bash
# Runs every fuzz target for the given time (default 60s) and keeps a bounded
# sample of the inputs the fuzzer found interesting in the package's
# testdata/fuzz/<Target>/, so `go test` replays them from then on. Crashers
# are written there by `go test -fuzz` itself and must be committed.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-60s}"
keep=40
cache="$(go env GOCACHE)/fuzz"
modules="$(go list -m | tr "\n" " ")"
for pkg in $(go list ./... ./sdk/... ./examples/sink-jsonl/...); do
	dir="$(go list -f '{{.Dir}}' "$pkg")"
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "== $pkg $target ($fuzztime)"
		# Minimizing each new interesting input may take 60 s by default,
		# during which the target is not fuzzed at all: keep it short.
		go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s
		found="$cache/$pkg/$target"
		if [ -d "$found" ]; then
			mkdir -p "$dir/testdata/fuzz/$target"
			ls -t "$found" | head -n "$keep" | while read -r f; do
				cp -n "$found/$f" "$dir/testdata/fuzz/$target/" || true
			done
		fi
	done
done
echo "corpus kept under each package's testdata/fuzz/; commit it (modules: $modules)"
