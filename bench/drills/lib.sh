# shellcheck shell=bash
# Shared helpers of the drills; sourced, not run. Every process a drill starts is registered
# with `track` and killed by the EXIT trap, and the work directory is removed (KEEP=1 keeps it).

DRILLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$DRILLS_DIR/../.." && pwd)
BIN=${DRILL_BIN:-$REPO_DIR/target/release/vod-purge}
[[ $BIN == /* ]] || BIN=$PWD/$BIN
ADMIN_TOKEN=drill-admin
SOURCE_TOKEN=drill-source
PIDS=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vod-purge-drill.XXXXXX")

track() { PIDS+=("$1"); }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

ensure_bin() {
    if [[ ! -x $BIN ]]; then
        log "building the release binary (cargo build --release)"
        (cd "$REPO_DIR" && cargo build --release --locked >&2)
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL SECONDS: waits until URL answers 2xx.
wait_http() {
    local url=$1 limit=$2
    python3 - "$url" "$limit" <<'PY'
import sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + limit
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if 200 <= r.status < 300:
                sys.exit(0)
    except Exception:
        pass
    if time.monotonic() > end:
        sys.exit(f"timed out waiting for {url}")
    time.sleep(0.02)
PY
}

# start_sim PORT [ARGS...]: starts the simulator; sets SIM_PID and SIM_URL.
start_sim() {
    local port=$1
    shift
    "$BIN" sim --listen "127.0.0.1:$port" --quota-refresh 1000000000 --quota-preload 1000000000 \
        "$@" >>"$WORK/sim.log" 2>&1 &
    SIM_PID=$!
    track "$SIM_PID"
    SIM_URL="http://127.0.0.1:$port"
    wait_http "$SIM_URL/_sim/faults" 20
}

# write_config FILE PORT DB SIM_URL [EXTRA_TOML]: a service configuration for the drills.
write_config() {
    local file=$1 port=$2 db=$3 sim=$4 extra=${5:-}
    cat >"$file" <<TOML
[server]
listen = "127.0.0.1:$port"
admin_token = "$ADMIN_TOKEN"
shutdown_grace = "5s"
[store]
url = "sqlite://$db"
[vod]
endpoint = "$sim"
credentials = "config"
access_key_id = "testid"
access_key_secret = "testsecret"
$(sed -n '/^#vod$/,/^#end$/p' <<<"$extra" | sed '1d;$d')
[queue]
$(sed -n '/^#queue$/,/^#end$/p' <<<"$extra" | sed '1d;$d')
[[sources]]
name = "cms"
auth = "bearer"
secrets = ["$SOURCE_TOKEN"]
format = "native"
TOML
}

# start_service CONFIG: starts `vod-purge serve`; sets SVC_PID. Logs go to $WORK/service.log.
start_service() {
    "$BIN" serve --config "$1" >>"$WORK/service.log" 2>&1 &
    SVC_PID=$!
    track "$SVC_PID"
}

# start_drill DB EXTRA_TOML [SIM_ARGS...]: the binary, the machine's description, a simulator
# recording its calls to $WORK/calls.jsonl, and the service on $WORK/DB with EXTRA_TOML (see
# write_config), ready. Sets SIM_PORT, SIM_URL, APP_PORT, APP_URL and SVC_PID.
start_drill() {
    local db=$1 extra=$2
    shift 2
    ensure_bin
    machine_info
    SIM_PORT=$(free_port)
    APP_PORT=$(free_port)
    APP_URL="http://127.0.0.1:$APP_PORT"
    start_sim "$SIM_PORT" --calls-log "$WORK/calls.jsonl" "$@"
    write_config "$WORK/config.toml" "$APP_PORT" "$WORK/$db" "$SIM_URL" "$extra"
    start_service "$WORK/config.toml"
    wait_http "$APP_URL/readyz" 30
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

machine_info() {
    echo "nproc: $(nproc)"
    echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "binary: $BIN ($(cd "$REPO_DIR" && git rev-parse --short HEAD 2>/dev/null || echo unknown))"
}
