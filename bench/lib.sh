# shellcheck shell=bash
# Shared by bench/ingest.sh and bench/drain.sh: a work directory and process list cleaned up on
# exit, a free loopback port, and waiting for an HTTP endpoint. Source it after `set -euo pipefail`
# with NAME set to the benchmark's name.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vod-purge-${NAME}.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL: up to 60 s for a 2xx answer.
wait_http() {
    local _
    for _ in $(seq 1 600); do
        curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}
