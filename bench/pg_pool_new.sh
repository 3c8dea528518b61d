#!/usr/bin/env bash
# PostgreSQL ingest of repeated IDs against new IDs, one replica: bench/replicas.sh pg1 with
# WORKLOAD=new, then WORKLOAD=pool (two IDs a request drawn from 100,000), for BIN and, when
# BASELINE names another binary, for it too in the same run (alternating). Prints each one's
# req/s and the ratio pool / new (goal >= 0.9: merging an ID costs about what storing a new one
# does).
# Needs wrk, psql and PostgreSQL on 127.0.0.1:5432 (trust auth), like bench/replicas.sh.
# Usage: [BIN=…] [BASELINE=…] bench/pg_pool_new.sh [seconds, default 10]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
secs=${1:-10}
bins=("${BIN:-$here/../target/release/vod-purge}")
[ -n "${BASELINE:-}" ] && bins+=("$BASELINE")
for bin in "${bins[@]}"; do
    [ -x "$bin" ] || { echo "no binary at $bin: cargo build --release first" >&2; exit 1; }
done
for bin in "${bins[@]}"; do
    new=$(BIN="$bin" WORKLOAD=new bash "$here/replicas.sh" pg1 "$secs" | awk '/pg1 total/ {print $3}')
    pool=$(BIN="$bin" WORKLOAD=pool bash "$here/replicas.sh" pg1 "$secs" | awk '/pg1 total/ {print $3}')
    ratio=$(python3 -c "print(f'{$pool / $new:.2f}')")
    echo "$bin: new IDs $new req/s, pool $pool req/s, pool / new $ratio (goal >= 0.9)"
done
