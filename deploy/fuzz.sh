#!/usr/bin/env bash
# Runs every Go fuzz target in the tree for FUZZTIME each (make fuzz,
# make fuzz-ci): ./deploy/fuzz.sh 30s. GO names the go command.
#
# Go 1.26's fuzzing coordinator can fail a duration-bound run at the
# -fuzztime boundary with a bare "context deadline exceeded" and no failing
# input, when a worker is still mid-call as the deadline fires on a loaded
# machine (go.dev/issue/75804, fixed in Go 1.27). A real finding always
# writes "Failing input written to testdata/fuzz/...": a failure without
# one that is that race is run once more; anything else fails.
set -uo pipefail
fuzztime=${1:-30s}
go=${GO:-go}
for spec in $(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do
  for f in $(grep -h '^func Fuzz' "$spec"/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do
    for try in 1 2; do
      echo "== $spec $f"
      out=$("$go" test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" "$spec" 2>&1)
      status=$?
      echo "$out"
      [ $status -eq 0 ] && break
      if [ $try -eq 1 ] && grep -q '^    context deadline exceeded$' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
        echo "== $spec $f: the fuzzing coordinator's deadline race (go.dev/issue/75804), no failing input: once more"
        continue
      fi
      exit 1
    done
  done
done
