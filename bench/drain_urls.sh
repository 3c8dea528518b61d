#!/usr/bin/env bash
# URL drain benchmark: a backlog of URLS (5,000) distinct file URLs on the account's CDN domain,
# enqueued with POST /purge in requests of 1,000, sent by `vod-purge serve` (SQLite store in a
# temporary directory) to the simulator as RefreshVodObjectCaches calls of vod.urls_per_call (100)
# URLs, at vod.url_requests_per_second (10), and followed to the edge (the simulator's CDN tasks
# complete COMPLETE_AFTER after their call).
#
# Prints the calls and URLs per call (target: URLS / urls_per_call calls, every URL once), the
# seconds from the first call to the last (the floor is calls / rate), throttled answers (target
# 0), and the seconds until every URL's outcome is complete.
#
# Environment: BIN (a vod-purge binary to measure instead of building this checkout), URLS (5000),
# PER_CALL (100), RATE (10), COMPLETE_AFTER (2s), TIMEOUT (120 seconds). Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

URLS=${URLS:-5000}
PER_CALL=${PER_CALL:-100}
RATE=${RATE:-10}
COMPLETE_AFTER=${COMPLETE_AFTER:-2s}
TIMEOUT=${TIMEOUT:-120}
ADMIN=bench-admin

command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
    echo "== building (cargo build --release)" >&2
    cargo build --release --locked --bins >&2
    BIN=target/release/vod-purge
fi

NAME=drain-urls
# shellcheck source=bench/lib.sh
source bench/lib.sh

SIM_PORT=$(free_port)
PORT=$(free_port)
mkdir -p "$WORK/store"
cat >"$WORK/config.toml" <<CONF
[server]
listen = "127.0.0.1:$PORT"
admin_token = "$ADMIN"

[store]
url = "sqlite://$WORK/store/vod-purge.db"

[vod]
endpoint = "http://127.0.0.1:$SIM_PORT"
credentials = "config"
access_key_id = "testid"
access_key_secret = "testsecret"
cdn_domains = ["cdn.example.com"]
urls_per_call = $PER_CALL
url_requests_per_second = $RATE
follow_interval = "1s"

[queue]
quiet = "1s"
max_wait = "30s"
CONF

"$BIN" sim --listen "127.0.0.1:$SIM_PORT" --quota-url 100000000 --cdn-domain cdn.example.com \
    --url-qps "$RATE" --task-complete-after "$COMPLETE_AFTER" >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
"$BIN" serve --config "$WORK/config.toml" >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$SIM_PORT/_sim/calls"
wait_http "http://127.0.0.1:$PORT/readyz"
curl -fsS --max-time 5 -X DELETE "http://127.0.0.1:$SIM_PORT/_sim/calls"

python3 - "$PORT" "$SIM_PORT" "$ADMIN" "$URLS" "$PER_CALL" "$RATE" "$TIMEOUT" <<'PY'
import json, sys, time, urllib.request

port, sim_port, token, total, per_call, rate, timeout = sys.argv[1:]
total, per_call, rate, timeout = int(total), int(per_call), int(rate), float(timeout)
urls = [f"https://cdn.example.com/videos/v{i:05d}/cover.jpg" for i in range(total)]

def call(url, body=None, method="GET"):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)

start = time.time()
for i in range(0, total, 1000):
    receipt = call(f"http://127.0.0.1:{port}/purge", json.dumps({"urls": urls[i:i + 1000]}).encode(), "POST")
    assert len(receipt["accepted"]) == len(urls[i:i + 1000]), receipt
enqueued = time.time()

def calls():
    return [c for c in call(f"http://127.0.0.1:{sim_port}/_sim/calls") if c["action"] == "RefreshVodObjectCaches"]

while True:
    ok = [c for c in calls() if c["status"] == 200]
    if sum(len(c["object_paths"]) for c in ok) >= total:
        break
    if time.time() - start > timeout:
        sys.exit(f"only {sum(len(c['object_paths']) for c in ok)} of {total} URLs sent after {timeout:.0f} s")
    time.sleep(0.2)
sent = time.time()
all_calls = calls()
ok = [c for c in all_calls if c["status"] == 200]
throttled = [c for c in all_calls if c["status"] != 200]
paths = [p for c in ok for p in c["object_paths"]]
first, last = min(c["at_ms"] for c in ok), max(c["at_ms"] for c in ok)

def complete():
    done, cursor = 0, None
    while True:
        page = call(f"http://127.0.0.1:{port}/jobs?limit=500" + (f"&cursor={cursor}" if cursor else ""))
        done += sum(1 for j in page["jobs"] for i in j["items"] if i["outcome"] == "complete")
        cursor = page.get("next_cursor")
        if not cursor:
            return done

while complete() < total:
    if time.time() - start > timeout:
        listings = [c for c in call(f"http://127.0.0.1:{sim_port}/_sim/calls") if c["action"] == "DescribeVodRefreshTasks"]
        codes = {}
        for c in listings:
            codes[(c["status"], c.get("code"))] = codes.get((c["status"], c.get("code")), 0) + 1
        print("listings:", codes, file=sys.stderr)
        page = call(f"http://127.0.0.1:{port}/jobs?limit=500")
        stuck = [(j["id"], j["vod_job_id"], i["target"]) for j in page["jobs"] for i in j["items"] if i["outcome"] != "complete"][:3]
        print("stuck:", stuck, file=sys.stderr)
        tasks = call(f"http://127.0.0.1:{sim_port}/_sim/tasks")
        for _, _, target in stuck:
            print("sim:", [t for t in tasks if t["object_path"] == target], file=sys.stderr)
        sys.exit(f"only {complete()} of {total} URLs complete after {timeout:.0f} s")
    time.sleep(0.5)
done = time.time()

print(f"URL drain benchmark: {total} distinct file URLs, vod.urls_per_call = {per_call}, "
      f"vod.url_requests_per_second = {rate}, enqueued in {enqueued - start:.2f} s")
print(f"calls          : {len(ok)} successful (floor {-(-total // per_call)}), "
      f"{len(paths) / max(len(ok), 1):.1f} URLs per call, {len(paths)} URLs sent, "
      f"{len(set(paths))} distinct: {'every URL once' if len(paths) == len(set(paths)) == total else 'MISMATCH'}")
print(f"first to last  : {(last - first) / 1000:.2f} s (floor {(len(ok) - 1) / rate:.2f} s at {rate} calls/s); "
      f"{len(throttled)} throttled or refused")
print(f"to complete    : every URL complete {done - start:.1f} s after the first request "
      f"({done - sent:.1f} s after the last call; the simulator's tasks take the configured time)")
PY
