#!/usr/bin/env bash
# Crash drill: webhooks at a high rate while the service is killed with SIGKILL at random moments
# and restarted on the same SQLite file; at the end every ID answered 202 must have been sent to
# the simulator in a successful call, and every acknowledged event must be followed by a purge of
# its ID that started after it.
#
#   bench/drills/crash.sh [--kills N] [--threads N] [--rate REQ_PER_S] [--pool N]
#
# --pool N draws the IDs from a pool of N (repeated IDs: most events merge) instead of new ones.
#
# Bounded: about 4 s per kill plus the final drain (at most 180 s).
set -euo pipefail
# shellcheck source=bench/drills/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KILLS=12 THREADS=4 RATE=150 IDS_PER_REQUEST=4 POOL=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --kills) KILLS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --pool) POOL=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

# 100 ms of latency per call, so that kills often land while a batch is in flight.
# A short lease so that batches in flight when the process died are sent again soon.
start_drill drill.db '#vod
timeout = "1s"
#end
#queue
quiet = "100ms"
max_wait = "2s"
linger = "50ms"
lease = "3s"
poll_interval = "20ms"
#end' --latency-ms 100
log "service on $APP_URL, simulator on $SIM_URL; $KILLS kills, $THREADS client threads at $RATE requests/s x $IDS_PER_REQUEST IDs (pool: ${POOL:-none})"

python3 "$DRILLS_DIR/drill.py" load --url "$APP_URL" --token "$SOURCE_TOKEN" --threads "$THREADS" \
    --rate "$RATE" --ids-per-request "$IDS_PER_REQUEST" --duration 600 --stop-file "$WORK/stop" \
    --prefix "crash$$" --acked "$WORK/acked.txt" --pool "$POOL" >"$WORK/load.json" &
LOAD_PID=$!
track "$LOAD_PID"

declare -a downtimes=()
for ((k = 1; k <= KILLS; k++)); do
    # A random moment 0.3 to 3 s into this incarnation.
    sleep "$(python3 -c 'import random; print(round(random.uniform(0.3, 3.0), 2))')"
    kill -KILL "$SVC_PID"
    wait "$SVC_PID" 2>/dev/null || true
    t0=$(date +%s%N)
    start_service "$WORK/config.toml"
    wait_http "$APP_URL/healthz" 30
    downtimes+=($((($(date +%s%N) - t0) / 1000000)))
    log "kill $k/$KILLS: SIGKILL, restarted in ${downtimes[-1]} ms"
done
sleep 1
touch "$WORK/stop"
wait "$LOAD_PID"
log "load: $(cat "$WORK/load.json")"

log "final drain (waiting for leases of interrupted batches to run out)"
t0=$(date +%s)
python3 "$DRILLS_DIR/drill.py" drain --url "$APP_URL" --token "$ADMIN_TOKEN" --timeout 180 >/dev/null
log "drained in $(($(date +%s) - t0)) s"

echo "load: $(cat "$WORK/load.json")"
echo "kills: $KILLS (restart to /healthz, ms: ${downtimes[*]})"
echo "panics or errors in the service log: $(grep -cE 'panicked|ERROR' "$WORK/service.log" || true)"
result=$(python3 "$DRILLS_DIR/drill.py" calls --calls-log "$WORK/calls.jsonl" --acked "$WORK/acked.txt") || {
    echo "result: $result"
    echo "CRASH DRILL FAILED: acknowledged IDs were lost"
    exit 1
}
echo "result: $result"
echo "CRASH DRILL PASSED"
