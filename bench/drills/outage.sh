#!/usr/bin/env bash
# Outage drill: steady webhooks; the simulator fails every call (503 ServiceUnavailable) for 60 s,
# then recovers. Checks that nothing acknowledged is lost, reports the call rate during the outage
# (the backoff must keep it low) and how fast the backlog drains afterwards.
#
#   bench/drills/outage.sh [--outage-seconds 60] [--rate REQ_PER_S] [--max-outage-rps R]
#                          [--before S] [--after S]
#
# Bounded: 10 s before, the outage, 20 s after (--before, --after), then the drain (at most 300 s).
set -euo pipefail
# shellcheck source=bench/drills/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUTAGE=60 RATE=50 MAX_OUTAGE_RPS=1 BEFORE=10 AFTER=20
while [[ $# -gt 0 ]]; do
    case $1 in
        --outage-seconds) OUTAGE=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --max-outage-rps) MAX_OUTAGE_RPS=$2; shift 2 ;;
        --before) BEFORE=$2; shift 2 ;;
        --after) AFTER=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

# The retry settings are the defaults of config/default.toml.
start_drill drill.db '#queue
quiet = "200ms"
max_wait = "2s"
#end'
DURATION=$((BEFORE + OUTAGE + AFTER))
log "steady load: $RATE requests/s x 4 IDs for $DURATION s; outage of $OUTAGE s from t=$BEFORE s"

python3 "$DRILLS_DIR/drill.py" load --url "$APP_URL" --token "$SOURCE_TOKEN" --threads 2 \
    --rate "$RATE" --ids-per-request 4 --duration "$DURATION" \
    --prefix "outage$$" --acked "$WORK/acked.txt" >"$WORK/load.json" &
LOAD_PID=$!
track "$LOAD_PID"
sleep "$BEFORE"
faults=$(curl -sf -X PUT -H 'Content-Type: application/json' \
    -d "{\"outage_for_ms\": $((OUTAGE * 1000))}" "$SIM_URL/_sim/faults")
START_MS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["outage_start_ms"])' "$faults")
END_MS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["outage_end_ms"])' "$faults")
log "outage: $faults"
wait "$LOAD_PID"
log "load: $(cat "$WORK/load.json")"
t0=$(date +%s)
python3 "$DRILLS_DIR/drill.py" drain --url "$APP_URL" --token "$ADMIN_TOKEN" --timeout 300 >/dev/null || true
log "drained $(($(date +%s) - t0)) s after the load stopped"

failed_jobs=$(curl -sf -H "Authorization: Bearer $ADMIN_TOKEN" "$APP_URL/jobs?status=failed&limit=500" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
echo "load: $(cat "$WORK/load.json")"
echo "failed jobs after the drain: $failed_jobs"
echo "settings: vod.max_requests_per_second=50, retry_base=500ms, retry_max=60s, max_attempts=8 (defaults)"
rates=$(python3 "$DRILLS_DIR/drill.py" outage --calls-log "$WORK/calls.jsonl" --start-ms "$START_MS" --end-ms "$END_MS")
echo "rates: $rates"
status=0
result=$(python3 "$DRILLS_DIR/drill.py" calls --calls-log "$WORK/calls.jsonl" --acked "$WORK/acked.txt") || status=1
echo "result: $result"
mean=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["calls_per_second_during_outage_last_30s_mean"])' "$rates")
if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$mean" "$MAX_OUTAGE_RPS"; then
    echo "call rate in the last 30 s of the outage: $mean/s (bound $MAX_OUTAGE_RPS/s)"
else
    echo "call rate in the last 30 s of the outage: $mean/s, above the bound of $MAX_OUTAGE_RPS/s"
    status=1
fi
[[ $status == 0 ]] && echo "OUTAGE DRILL PASSED" || echo "OUTAGE DRILL FAILED"
exit "$status"
