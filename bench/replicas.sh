#!/usr/bin/env bash
# Ingest throughput of `vod-purge serve` (release build, dry run) under wrk: POST /webhooks/cms
# with 5 fresh media IDs per request.
#   sqlite: one process on SQLite, wrk -t2 -c48
#   pg1:    one process on PostgreSQL, wrk -t2 -c48
#   pg3:    three processes on one PostgreSQL database, one wrk -t1 -c16 each (figures summed)
# With WORKLOAD=new|pool|zipf the requests are those of bench/ingest.sh instead (bench/ingest.lua:
# two IDs a request, new on every request, or drawn from a pool of POOL IDs uniformly or with Zipf
# skew), so the merge path is measured on PostgreSQL too.
# Needs wrk, psql and PostgreSQL on 127.0.0.1:5432 (trust auth). Ports 18081-18083.
# Usage: cargo build --release && [WORKLOAD=pool] bench/replicas.sh sqlite|pg1|pg3 [seconds]
set -euo pipefail
mode=$1; secs=${2:-15}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN="${BIN:-$here/../target/release/vod-purge}"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
LUA="$here/replicas.lua"
per_request="5 IDs per request"
if [ -n "${WORKLOAD:-}" ]; then
  LUA="$here/ingest.lua"
  per_request="2 IDs per request, workload $WORKLOAD"
  export WORKLOAD TOKEN=bench-secret SOURCE=cms
fi
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
case $mode in
  sqlite) url="sqlite://$dir/bench.db"; n=1 ;;
  pg1|pg3)
    db="vp_bench_$$"
    psql -q -h 127.0.0.1 -U postgres -d test -c "CREATE DATABASE $db"
    url="postgres://postgres@127.0.0.1:5432/$db"; n=${mode#pg} ;;
esac
for i in $(seq 1 "$n"); do
  port=$((18080 + i))
  # Something already answering there would be measured instead of this build.
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
    echo "port $port is already in use: stop what listens there first" >&2; exit 1
  fi
  cat > "$dir/r$i.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
admin_token = "bench-admin"
[store]
url = "$url"
[vod]
dry_run = true
[[sources]]
name = "cms"
auth = "bearer"
secrets = ["bench-secret"]
format = "native"
TOML
  RUST_LOG=warn "$BIN" serve --config "$dir/r$i.toml" 2>"$dir/r$i.log" & pids+=($!)
done
for i in $(seq 1 "$n"); do
  tries=0
  until curl -sf "http://127.0.0.1:$((18080 + i))/readyz" >/dev/null; do
    tries=$((tries + 1)); [ "$tries" -lt 150 ] || { echo "replica $i never became ready" >&2; exit 1; }
    sleep 0.2
  done
done
if [ "$n" = 1 ]; then
  wrk -t2 -c48 -d"${secs}s" --latency -s "$LUA" http://127.0.0.1:18081 -- w1 > "$dir/wrk1.txt"
else
  wrks=()
  for i in $(seq 1 "$n"); do
    wrk -t1 -c16 -d"${secs}s" --latency -s "$LUA" "http://127.0.0.1:$((18080 + i))" -- "w$i" > "$dir/wrk$i.txt" & wrks+=($!)
  done
  wait "${wrks[@]}"
fi
total=0
for f in "$dir"/wrk*.txt; do
  rps=$(awk '/Requests\/sec/ {print $2}' "$f"); total=$(echo "$total + $rps" | bc)
  echo "$(basename "$f"): $rps req/s; $(grep -E '50%|99%' "$f" | tr -s ' ' | tr '\n' ' ') $(grep -E 'Non-2xx|errors' "$f" | tr '\n' ' ')"
done
echo "$mode total: $total req/s ($per_request)"
if [ "$mode" != sqlite ]; then
  echo "IDs stored: $(psql -At -h 127.0.0.1 -U postgres -d "$db" -c "select (select count(*) from items) + (select count(*) from job_items)"), delivery IDs stored: $(psql -At -h 127.0.0.1 -U postgres -d "$db" -c "select count(*) from deliveries")"
fi
cleanup
[ "$mode" != sqlite ] && psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
true
