#!/usr/bin/env bash
# Scale drill: 1,000,000 pending items. Seeds the SQLite file directly (sqlite3, matching
# migrations/sqlite/), then measures start-up (time to /readyz), resident memory, idle CPU, and
# the time of GET /queue and GET /metrics; then makes every item due and measures how the flusher
# behaves (call rate, the same reads while it drains).
#
#   bench/drills/scale.sh [--items N] [--drain-seconds S]
#
# Needs the sqlite3 command-line shell. Bounded: about 2 minutes at 1,000,000 items.
set -euo pipefail
# shellcheck source=bench/drills/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ITEMS=1000000 DRAIN_SECONDS=20
while [[ $# -gt 0 ]]; do
    case $1 in
        --items) ITEMS=$2; shift 2 ;;
        --drain-seconds) DRAIN_SECONDS=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
command -v sqlite3 >/dev/null || { echo "scale.sh needs the sqlite3 shell" >&2; exit 2; }

ensure_bin
machine_info
SIM_PORT=$(free_port)
APP_PORT=$(free_port)
APP_URL="http://127.0.0.1:$APP_PORT"
DB="$WORK/scale.db"
start_sim "$SIM_PORT" --calls-log "$WORK/calls.jsonl"
write_config "$WORK/config.toml" "$APP_PORT" "$DB" "$SIM_URL" '#queue
quiet = "1h"
max_wait = "2h"
#end'

stop_service() {
    kill -TERM "$SVC_PID"
    wait "$SVC_PID" 2>/dev/null || true
}

# time_get PATH: milliseconds of one GET (with the admin token).
time_get() {
    curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $ADMIN_TOKEN" "$APP_URL$1" |
        python3 -c 'import sys; print(round(float(sys.stdin.read()) * 1000, 1))'
}
# median_get PATH: the median of five GETs, in milliseconds.
median_get() {
    for _ in 1 2 3 4 5; do time_get "$1"; done | sort -n | sed -n 3p
}

# One item through the API gives the exact task, fingerprint and options encoding to copy; with
# that one item pending, the reads' baseline.
start_service "$WORK/config.toml"
wait_http "$APP_URL/readyz" 30
curl -sf -X POST -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d '{"media_ids": ["template"], "task": "Refresh"}' "$APP_URL/purge" >/dev/null
BASE_Q=$(median_get /queue)
BASE_M=$(median_get /metrics)
echo "one item pending (baseline): GET /queue median ${BASE_Q} ms, GET /metrics median ${BASE_M} ms"
stop_service

t0=$(date +%s%N)
sqlite3 "$DB" >/dev/null <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $ITEMS)
INSERT INTO items (account, media_id, task, fingerprint, source, first_seen, last_seen, deadline, due_at, events)
SELECT t.account, printf('scale%07d', i), t.task, t.fingerprint, 'admin',
       t.first_seen + i / 1000, t.first_seen + i / 1000, t.deadline, t.due_at, 1
FROM n, (SELECT * FROM items WHERE media_id = 'template') AS t;
DELETE FROM items WHERE media_id = 'template';
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
seed_ms=$((($(date +%s%N) - t0) / 1000000))
log "seeded $ITEMS items in $seed_ms ms ($(du -h "$DB" | cut -f1))"

ratio() { python3 -c "print(f'{$1 / max($2, 0.1):.1f}x')"; }
# measure LABEL: reads (and their ratio to the one-item baseline), memory and CPU of the running
# service.
measure() {
    local label=$1 q m c1 c2
    q=$(median_get /queue)
    m=$(median_get /metrics)
    c1=$(cpu_ticks "$SVC_PID")
    sleep 5
    c2=$(cpu_ticks "$SVC_PID")
    local hz
    hz=$(getconf CLK_TCK)
    echo "$label: GET /queue median ${q} ms ($(ratio "$q" "$BASE_Q") of one item), GET /metrics median ${m} ms ($(ratio "$m" "$BASE_M")), RSS $(($(rss_kb "$SVC_PID") / 1024)) MiB, CPU over 5 s $(python3 -c "print(round(($c2 - $c1) / $hz / 5 * 100, 1))")%"
}

echo "items: $ITEMS, seeded in $seed_ms ms"
t0=$(date +%s%N)
start_service "$WORK/config.toml"
wait_http "$APP_URL/readyz" 120
echo "pending, none due: /readyz after $((($(date +%s%N) - t0) / 1000000)) ms"
sleep 1
measure "pending, none due"
curl -s -H "Authorization: Bearer $ADMIN_TOKEN" "$APP_URL/queue"; echo
stop_service

# Every item due now: the flusher has a backlog of ITEMS / 20 calls.
sqlite3 "$DB" "UPDATE items SET due_at = $(date +%s%3N) - 1000; PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
t0=$(date +%s%N)
start_service "$WORK/config.toml"
wait_http "$APP_URL/readyz" 120
echo "all due: /readyz after $((($(date +%s%N) - t0) / 1000000)) ms"
sleep 2
measure "all due, draining"
sleep "$DRAIN_SECONDS"
measure "all due, draining (later)"
curl -s -H "Authorization: Bearer $ADMIN_TOKEN" "$APP_URL/queue"; echo
stop_service
python3 - "$WORK/calls.jsonl" <<'PY'
import json, sys
calls = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
calls = [c for c in calls if c["action"] == "RefreshMediaPlayUrls"]
if not calls:
    print("calls while draining: 0")
    sys.exit()
t0, t1 = calls[0]["at_ms"], calls[-1]["at_ms"]
ids = sum(len(c["media_ids"]) for c in calls)
first = calls[0]["at_ms"]
print(f"calls while draining: {len(calls)} in {(t1 - t0) / 1000:.1f} s "
      f"({len(calls) / max(0.001, (t1 - t0) / 1000):.1f}/s), {ids} IDs, "
      f"{sum(1 for c in calls if c['status'] == 200)} succeeded")
PY
