#!/usr/bin/env bash
# Isolation of accounts: the IDs per second of a healthy account that drains a backlog while
# another account of the same deployment is in trouble, against the same drain with one account,
# measured in the same run.
#
# Each run starts `vod-purge serve` (SQLite in a temporary directory) and one simulator per
# account (each account has its own endpoint, as a China and an international region do; the
# simulators count arrivals in any sliding second, at most 50). The default account drains IDS
# (10,000) distinct media IDs at max_requests_per_second = 50. The runs:
#   alone     one account (the baseline)
#   down      a second account "intl" whose endpoint is a closed port, with its own IDS backlog;
#             once the default account has drained, its simulator starts on that port and the
#             run waits until intl's backlog has gone out too
#   quota     intl's VOD has a daily quota of 100 URLs: its jobs are held
#   throttle  intl's VOD allows 5 calls per second while intl is configured for 50
#
# Prints per run: the default account's IDs per second from its first call to its last, the ratio
# to the baseline (target >= 0.95), its throttled calls (target 0), and what became of intl's work.
#
# Environment: BIN (a vod-purge binary instead of building this checkout), IDS (10000), RUNS
# ("alone down quota throttle"), TIMEOUT (120 s per drain). Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

IDS=${IDS:-10000}
RUNS=${RUNS:-alone down quota throttle}
TIMEOUT=${TIMEOUT:-120}
ADMIN=bench-admin

if [ -z "${BIN:-}" ]; then
    echo "== building (cargo build --release)" >&2
    cargo build --release --locked --bins >&2
    BIN=target/release/vod-purge
fi

NAME=accounts
# shellcheck source=bench/lib.sh
source bench/lib.sh

# start_sim PORT ARGS...: a simulator counting arrivals in any sliding second.
start_sim() {
    local port=$1
    shift
    "$BIN" sim --listen "127.0.0.1:$port" "$@" >>"$WORK/sim-$port.log" 2>&1 &
    PIDS+=($!)
    SIM_PIDS[$port]=$!
    wait_http "http://127.0.0.1:$port/_sim/calls"
    curl -fsS --max-time 5 -X PUT -H 'Content-Type: application/json' \
        -d '{"qps": 50, "qps_sliding": true}' "http://127.0.0.1:$port/_sim/faults" >/dev/null
}
declare -A SIM_PIDS

# enqueue PORT SOURCE TOKEN PREFIX: IDS IDs in concurrent requests of 1,000 to /webhooks/SOURCE.
enqueue() {
    python3 - "$@" "$IDS" <<'PY'
import json, sys, threading, urllib.request
port, source, token, prefix, total = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ids = [f"{prefix}{i:06d}" for i in range(total)]
errors = []
def post(chunk):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/{source}", method="POST",
        data=json.dumps({"media_ids": chunk}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            if resp.status != 202:
                errors.append(resp.status)
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=post, args=(ids[i:i + 1000],)) for i in range(0, total, 1000)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    sys.exit(f"enqueue to {source} failed: {errors[:3]}")
PY
}

# sent SIM_PORT PREFIX: how many distinct IDs with PREFIX the simulator accepted.
sent() {
    curl -fsS --max-time 30 "http://127.0.0.1:$1/_sim/calls" | python3 -c '
import json, sys
calls = json.load(sys.stdin)
print(len({i for c in calls if c["action"] == "RefreshMediaPlayUrls" and c["status"] == 200
           for i in c["media_ids"] if i.startswith(sys.argv[1])}))' "$2"
}

# wait_sent SIM_PORT PREFIX: until all IDS went out, or TIMEOUT.
wait_sent() {
    local deadline=$((SECONDS + TIMEOUT))
    while [ "$(sent "$1" "$2")" -lt "$IDS" ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "  $2: only $(sent "$1" "$2") of $IDS sent in ${TIMEOUT}s" >&2
            return 1
        fi
        sleep 0.5
    done
}

# rate SIM_PORT: the default account's IDs per second, first to last call, and its throttled calls.
rate() {
    curl -fsS --max-time 30 "http://127.0.0.1:$1/_sim/calls" | python3 -c '
import json, sys
calls = sorted((c for c in json.load(sys.stdin) if c["action"] == "RefreshMediaPlayUrls"), key=lambda c: c["at_ms"])
ok = [c for c in calls if c["status"] == 200]
throttled = sum(1 for c in calls if c.get("code") == "Throttling")
span = (ok[-1]["at_ms"] - ok[0]["at_ms"]) / 1000
ids = sum(len(c["media_ids"]) for c in ok) - len(ok[0]["media_ids"])
print(f"{ids / span:.1f} {throttled} {len(ok)}")'
}

declare -A RATE
for run in $RUNS; do
    echo "== run $run" >&2
    CN_SIM=$(free_port)
    INTL_SIM=$(free_port)
    PORT=$(free_port)
    rm -rf "$WORK/store" && mkdir -p "$WORK/store"
    start_sim "$CN_SIM" --quota-refresh 100000000
    case "$run" in
    quota) start_sim "$INTL_SIM" --account intlid:intlsecret --quota-refresh 100 ;;
    throttle)
        start_sim "$INTL_SIM" --account intlid:intlsecret --quota-refresh 100000000
        curl -fsS --max-time 5 -X PUT -H 'Content-Type: application/json' \
            -d '{"qps": 5, "qps_sliding": true}' "http://127.0.0.1:$INTL_SIM/_sim/faults" >/dev/null
        ;;
    esac
    cat >"$WORK/config.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
admin_token = "$ADMIN"
[store]
url = "sqlite://$WORK/store/vod-purge.db"
[vod]
endpoint = "http://127.0.0.1:$CN_SIM"
credentials = "config"
access_key_id = "testid"
access_key_secret = "testsecret"
max_requests_per_second = 50
[queue]
quiet = "1s"
max_wait = "30s"
[[sources]]
name = "cn"
auth = "bearer"
secrets = ["cn-token"]
format = "native"
EOF
    if [ "$run" != alone ]; then
        cat >>"$WORK/config.toml" <<EOF
[[accounts]]
name = "intl"
endpoint = "http://127.0.0.1:$INTL_SIM"
credentials = "config"
access_key_id = "intlid"
access_key_secret = "intlsecret"
max_requests_per_second = 50
[[sources]]
name = "intl"
account = "intl"
auth = "bearer"
secrets = ["intl-token"]
format = "native"
EOF
    fi
    "$BIN" serve --config "$WORK/config.toml" >"$WORK/serve-$run.log" 2>&1 &
    SERVE=$!
    PIDS+=($SERVE)
    wait_http "http://127.0.0.1:$PORT/readyz"
    if [ "$run" != alone ]; then
        # intl's backlog first: it is in trouble before the default account's work arrives.
        enqueue "$PORT" intl intl-token sg
        sleep 2
    fi
    enqueue "$PORT" cn cn-token cn
    wait_sent "$CN_SIM" cn || true
    read -r ids_per_s throttled calls < <(rate "$CN_SIM")
    RATE[$run]=$ids_per_s
    line="  default account: $ids_per_s IDs/s in $calls calls, $throttled throttled"
    if [ "$run" != alone ] && [ -n "${RATE[alone]:-}" ]; then
        line="$line; against one account alone: $(python3 -c "print(f'{$ids_per_s / ${RATE[alone]}:.3f}')")"
    fi
    echo "$line"
    case "$run" in
    down)
        failed=$(curl -fsS --max-time 5 -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$PORT/jobs?account=intl&status=failed" |
            python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"]))')
        echo "  intl while down: nothing sent, $failed jobs failed (its attempts do not count during an outage); its VOD comes back"
        back=$SECONDS
        start_sim "$INTL_SIM" --account intlid:intlsecret --quota-refresh 100000000
        if wait_sent "$INTL_SIM" sg; then
            echo "  intl: all $IDS IDs sent $((SECONDS - back)) s after its VOD came back"
        fi
        ;;
    quota)
        held=$(curl -fsS --max-time 5 -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$PORT/queue" |
            python3 -c 'import json,sys; q = json.load(sys.stdin); a = [x for x in q["accounts"] if x["account"] == "intl"][0]; print(sum(h["jobs"] for h in a["held"]))')
        echo "  intl: $(sent "$INTL_SIM" sg) IDs sent within its quota of 100, $held jobs held"
        ;;
    throttle)
        echo "  intl: $(sent "$INTL_SIM" sg) IDs sent by then at its VOD's 5 calls/s"
        ;;
    esac
    kill "$SERVE" 2>/dev/null || true
    wait "$SERVE" 2>/dev/null || true
    for port in "$CN_SIM" "$INTL_SIM"; do
        if [ -n "${SIM_PIDS[$port]:-}" ]; then kill "${SIM_PIDS[$port]}" 2>/dev/null || true; fi
    done
done
