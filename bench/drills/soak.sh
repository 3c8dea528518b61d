#!/usr/bin/env bash
# Soak: mixed load for 10 minutes (webhooks, reads of /jobs /media /queue /metrics, operator
# retries of failed jobs, with permanent errors injected by the simulator every 20 s so there
# are failed jobs to retry). Reports resident memory over time, 5xx answers and log errors, and
# checks that nothing acknowledged is lost.
#
#   bench/drills/soak.sh [--minutes N] [--rate REQ_PER_S] [--max-growth-mib M]
set -euo pipefail
# shellcheck source=bench/drills/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MINUTES=10 RATE=40 MAX_GROWTH_MIB=8
while [[ $# -gt 0 ]]; do
    case $1 in
        --minutes) MINUTES=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --max-growth-mib) MAX_GROWTH_MIB=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
SECONDS_TOTAL=$(python3 -c "print(int(float('$MINUTES') * 60))")

start_drill soak.db '#queue
quiet = "500ms"
max_wait = "5s"
#end'
log "soak for $SECONDS_TOTAL s: $RATE webhook requests/s x 4 IDs, 2 readers at 10 reads/s, operator retries every 5 s"

python3 "$DRILLS_DIR/drill.py" mixed --url "$APP_URL" --token "$SOURCE_TOKEN" --admin-token "$ADMIN_TOKEN" \
    --rate "$RATE" --duration "$SECONDS_TOTAL" --prefix "soak$$" --acked "$WORK/acked.txt" >"$WORK/mixed.json" &
LOAD_PID=$!
track "$LOAD_PID"

# Every 20 s the simulator refuses the next 2 calls with a permanent error; every 10 s, memory.
echo "seconds rss_kib" >"$WORK/rss.txt"
start=$(date +%s)
injected=0
while kill -0 "$LOAD_PID" 2>/dev/null; do
    now=$(($(date +%s) - start))
    echo "$now $(rss_kb "$SVC_PID")" >>"$WORK/rss.txt"
    if ((now % 20 < 10)); then
        curl -sf -X PUT -H 'Content-Type: application/json' \
            -d '{"fail_next": 2, "error_code": "InvalidParameter.Soak"}' "$SIM_URL/_sim/faults" >/dev/null
        injected=$((injected + 2))
    fi
    sleep 10
done
wait "$LOAD_PID"
echo "$(($(date +%s) - start)) $(rss_kb "$SVC_PID")" >>"$WORK/rss.txt"
curl -sf -X PUT -H 'Content-Type: application/json' -d '{}' "$SIM_URL/_sim/faults" >/dev/null

# A last operator pass, then the drain.
curl -sf -H "Authorization: Bearer $ADMIN_TOKEN" "$APP_URL/jobs?status=failed&limit=500" |
    python3 -c 'import json,sys; [print(j["id"]) for j in json.load(sys.stdin)["jobs"]]' |
    while read -r id; do
        curl -s -o /dev/null -X POST -H "Authorization: Bearer $ADMIN_TOKEN" "$APP_URL/jobs/$id/retry"
    done
python3 "$DRILLS_DIR/drill.py" drain --url "$APP_URL" --token "$ADMIN_TOKEN" --timeout 120 >/dev/null || true

echo "load: $(cat "$WORK/mixed.json")"
echo "injected permanent errors: up to $injected calls"
echo "resident memory (s KiB): $(tail -n +2 "$WORK/rss.txt" | tr '\n' ' ')"
status=0
read -r first_quarter last <<<"$(python3 - "$WORK/rss.txt" <<'PY'
import sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]).read().split("\n")[1:] if l.strip()]
total = rows[-1][0]
# The first sample after a quarter of the run: warm-up (allocator pools, caches) is over.
base = next(r for r in rows if r[0] >= total / 4)
print(base[1], rows[-1][1])
PY
)"
growth=$((last - first_quarter))
echo "RSS at start $(sed -n 2p "$WORK/rss.txt" | cut -d' ' -f2) KiB, after a quarter of the run $first_quarter KiB, at the end $last KiB: growth $growth KiB (bound $MAX_GROWTH_MIB MiB)"
((growth <= MAX_GROWTH_MIB * 1024)) || { echo "memory grew beyond the bound"; status=1; }
fivexx=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["statuses"]; print(sum(v for k,v in s.items() if k.startswith("5")))' "$WORK/mixed.json")
echo "5xx answers: $fivexx"
((fivexx == 0)) || status=1
# Expected log lines: the injected permanent failures. Anything else at ERROR, or a panic, fails.
expected=$(grep -c 'ERROR.*InvalidParameter.Soak' "$WORK/service.log" || true)
unexpected=$(grep -E 'ERROR|panicked' "$WORK/service.log" | grep -vc 'InvalidParameter.Soak' || true)
echo "log: $expected ERROR lines for the injected failures, $unexpected other ERROR lines or panics, $(grep -c WARN "$WORK/service.log" || true) WARN lines"
((unexpected == 0)) || { grep -E 'ERROR|panicked' "$WORK/service.log" | grep -v 'InvalidParameter.Soak' | head -5; status=1; }
result=$(python3 "$DRILLS_DIR/drill.py" calls --calls-log "$WORK/calls.jsonl" --acked "$WORK/acked.txt") || status=1
echo "result: $result"
[[ $status == 0 ]] && echo "SOAK PASSED" || echo "SOAK FAILED"
exit "$status"
