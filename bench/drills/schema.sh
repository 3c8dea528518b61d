#!/usr/bin/env bash
# API schema drill: schemathesis against /openapi.json of `vod-purge demo` (service and simulator
# on loopback ports, admin token demo-token): no 5xx and no response that the document does not
# describe. schemathesis is installed into a venv under ${XDG_CACHE_HOME:-$HOME/.cache}/vod-purge-drills.
#
#   bench/drills/schema.sh [--max-examples N] [--max-time SECONDS]
set -euo pipefail
# shellcheck source=bench/drills/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MAX_EXAMPLES=50 MAX_TIME=240
while [[ $# -gt 0 ]]; do
    case $1 in
        --max-examples) MAX_EXAMPLES=$2; shift 2 ;;
        --max-time) MAX_TIME=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

VENV=${XDG_CACHE_HOME:-$HOME/.cache}/vod-purge-drills/venv
if [[ ! -x $VENV/bin/schemathesis ]]; then
    log "installing schemathesis into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q schemathesis
fi
ensure_bin
machine_info
echo "schemathesis: $("$VENV/bin/schemathesis" --version)"
APP_PORT=$(free_port)
SIM_PORT=$(free_port)
APP_URL="http://127.0.0.1:$APP_PORT"
(cd "$WORK" && exec "$BIN" demo --listen "127.0.0.1:$APP_PORT" --sim-listen "127.0.0.1:$SIM_PORT" \
    --db "$WORK/demo.db" >>"$WORK/service.log" 2>&1) &
track $!
wait_http "$APP_URL/readyz" 30
# A few jobs so that /jobs, /jobs/{id} and /media/{id} have something to show.
curl -sf -X POST -H 'Authorization: Bearer demo-token' -H 'Content-Type: application/json' \
    -d '{"media_ids": ["m1", "m2", "m3"]}' "$APP_URL/purge" >/dev/null

status=0
# From the work directory: schemathesis keeps a .schemathesis/ cache in the current directory.
cd "$WORK"
timeout $((MAX_TIME + 60)) "$VENV/bin/schemathesis" --config-file "$DRILLS_DIR/schemathesis.toml" run "$APP_URL/openapi.json" \
    --checks all --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" --workers 2 \
    -H 'Authorization: Bearer demo-token' --request-timeout 10 --no-color \
    --report junit --report-dir "$WORK/report" 2>&1 || status=$?
echo "5xx answers in the service log: $(grep -c 'store error while answering' "$WORK/service.log" || true)"
echo "panics in the service log: $(grep -c 'panicked' "$WORK/service.log" || true)"
[[ $status == 0 ]] && echo "SCHEMA DRILL PASSED" || echo "SCHEMA DRILL FAILED (schemathesis exit $status)"
exit "$status"
