#!/usr/bin/env bash
# Short versions of the drills, for CI (about 45 s after the build): the crash drill with 3 kills,
# a 5 s outage, a 9 s soak. The fuzz targets run with `cargo test` (64 to 256 cases each), the
# scale figures have a regression test (tests/it/drills.rs); the long drills run on demand.
#
#   bench/drills/ci.sh            (DRILL_BIN=path/to/vod-purge to use another binary)
set -euo pipefail
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
start=$(date +%s)
run() {
    local name=$1
    shift
    echo "== $name: $*"
    local out
    out=$(mktemp)
    if ! "$@" >"$out" 2>&1; then
        cat "$out"
        rm -f "$out"
        echo "== $name FAILED"
        exit 1
    fi
    grep -E '^(result:|rates:|kills:|RSS |5xx |log:)|PASSED' "$out" | cut -c1-400
    rm -f "$out"
}
run crash "$DIR/crash.sh" --kills 3
run outage "$DIR/outage.sh" --outage-seconds 5 --before 2 --after 3 --max-outage-rps 2
run soak "$DIR/soak.sh" --minutes 0.15
echo "== all drills passed in $(($(date +%s) - start)) s"
