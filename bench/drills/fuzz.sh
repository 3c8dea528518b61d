#!/usr/bin/env bash
# Fuzzing drill: runs the proptest fuzz targets (tests/it/fuzz_props/: configuration parsing,
# the simulator's gateway over HTTP; tests/it/webhook_props.rs: webhook verification and
# parsing) with many cases each, and reports executions and crashes (must be 0).
#
#   bench/drills/fuzz.sh [--cases N] [--max-seconds S]
#
# Uses the debug test binary (`cargo test`), so it shares the warm build of the test suite.
set -euo pipefail
# shellcheck source=bench/drills/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=10000 MAX_SECONDS=600
while [[ $# -gt 0 ]]; do
    case $1 in
        --cases) CASES=$2; shift 2 ;;
        --max-seconds) MAX_SECONDS=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
machine_info
cd "$REPO_DIR"
cargo test --locked --test it --no-run >&2
TARGETS=$(cargo test --locked --test it -- --list 2>/dev/null | grep -E '^(fuzz_props|webhook_props)::.*: test$' | sed 's/: test$//')
echo "targets: $(wc -w <<<"$TARGETS"), $CASES cases each"
status=0
total=0
for target in $TARGETS; do
    t0=$(date +%s%N)
    if PROPTEST_CASES=$CASES timeout "$MAX_SECONDS" cargo test --locked --test it -q -- --exact "$target" \
        >"$WORK/out.txt" 2>&1; then
        result="ok"
        total=$((total + CASES))
    else
        result="FAILED (exit $?)"
        status=1
    fi
    printf '%-60s %8d cases %7.1f s  %s\n' "$target" "$CASES" \
        "$(python3 -c "print(($(date +%s%N) - $t0) / 1e9)")" "$result"
    [[ $result == ok ]] || grep -E 'panicked|minimal failing input|Test failed' "$WORK/out.txt" | head -5
done
echo "executions: $total, crashes: $( [[ $status == 0 ]] && echo 0 || echo "see above")"
[[ $status == 0 ]] && echo "FUZZ DRILL PASSED" || echo "FUZZ DRILL FAILED"
exit "$status"
