#!/usr/bin/env bash
# Prints a `go test -run` pattern selecting shard I of N of PKG's top-level
# tests (those matching FILTER, a regexp, when given): names in the order
# `go test -list` prints them, dealt out round-robin, so every test is in
# exactly one shard and a new test needs no listing anywhere.
#
#   scripts/shard.sh ./cmd/dmsnap/ 2 4 [FILTER]
set -euo pipefail
pkg=$1 i=$2 n=$3 filter=${4:-.}
[[ $i =~ ^[0-9]+$ && $n =~ ^[0-9]+$ && $i -ge 1 && $i -le $n ]] ||
	{ echo "shard: want 1 <= I <= N, got I=$i N=$n" >&2; exit 2; }
names=$(${GO:-go} test -list "$filter" "$pkg" | grep -E '^(Test|Fuzz|Example)') ||
	{ echo "shard: no tests in $pkg match $filter" >&2; exit 1; }
sel=$(awk -v i="$i" -v n="$n" '(NR - 1) % n == i - 1' <<<"$names" | paste -sd'|')
# An empty shard (fewer tests than shards) selects nothing.
echo "^(${sel:-NoTestInThisShard})\$"
