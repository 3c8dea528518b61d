#!/usr/bin/env bash
# Ingest benchmark: durable 202 throughput of POST /webhooks/{source} on the real service
# (`vod-purge serve`, SQLite store in a temporary directory) against a bare actix-web handler that
# authenticates and parses the same body but stores nothing (examples/bare_ingest.rs), measured in
# the same run with wrk, for each workload (bench/ingest.lua):
#   new   two IDs new on every request: every event inserts (target: at least 0.6 of the bare
#         handler)
#   pool  two IDs drawn uniformly from a pool of POOL: mostly merges into pending items (target:
#         at least 0.8 of the new-ID workload)
#   zipf  the same pool with Zipf skew: most events on a few thousand IDs (target: at least the
#         pool workload)
#   urls  two file URLs new on every request (WORKLOADS="new urls"): URL bodies against media-ID
#         bodies, as a ratio to the new-ID workload
# Prints req/s, the ratios, and CPU per request for each.
#
# Environment: BIN (another vod-purge binary to measure, such as a baseline), WORKLOADS ("new pool zipf"), POOL (100000), ZIPF_S (1.1), DURATION (10s), WARMUP
# (3s), CONNECTIONS (64), THREADS (2), ROUNDS (2), RUST_LOG for the service (its default, info,
# unless set). Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
WORKLOADS=${WORKLOADS:-new pool zipf}
export POOL=${POOL:-100000} ZIPF_S=${ZIPF_S:-1.1}
TOKEN=bench-secret
ADMIN=bench-admin

command -v wrk >/dev/null || { echo "wrk is missing (Debian: apt-get install -y wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is missing" >&2; exit 1; }

echo "== building (cargo build --release)" >&2
cargo build --release --locked --bins --example bare_ingest >&2
BIN=${BIN:-target/release/vod-purge}
BARE=target/release/examples/bare_ingest

NAME=ingest
# shellcheck source=bench/lib.sh
source bench/lib.sh

REAL_PORT=$(free_port)
BARE_PORT=$(free_port)
mkdir -p "$WORK/store"
cat >"$WORK/config.toml" <<EOF
[server]
listen = "127.0.0.1:$REAL_PORT"
admin_token = "$ADMIN"

[store]
url = "sqlite://$WORK/store/vod-purge.db"

[vod]
# Nothing may compete with ingest during the measurement: no VOD calls at all, and items are due
# an hour after they arrive, so the flusher only polls.
dry_run = true
endpoint = "http://127.0.0.1:9"
cdn_domains = ["cdn.example.com"]

[queue]
quiet = "1h"
max_wait = "1h"

[[sources]]
name = "cms"
auth = "bearer"
secrets = ["$TOKEN"]
format = "native"
EOF

"$BIN" serve --config "$WORK/config.toml" >"$WORK/serve.log" 2>&1 &
REAL_PID=$!
PIDS+=("$REAL_PID")
"$BARE" --listen "127.0.0.1:$BARE_PORT" --token "$TOKEN" >"$WORK/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_http "http://127.0.0.1:$REAL_PORT/readyz"
wait_http "http://127.0.0.1:$BARE_PORT/healthz"

# One request by hand to each, so that a misconfiguration fails loudly instead of benchmarking 401s.
for port in "$REAL_PORT" "$BARE_PORT"; do
    code=$(curl -sS -o "$WORK/probe.json" -w '%{http_code}' --max-time 5 -X POST \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d '{"media_ids": ["probe-a", "probe-b"], "task": "Refresh"}' \
        "http://127.0.0.1:$port/webhooks/cms")
    if [ "$code" != 202 ]; then
        echo "probe of port $port answered $code: $(cat "$WORK/probe.json")" >&2
        exit 1
    fi
done

# cpu_ticks PID: CPU time (user + system, in clock ticks) of each thread of PID, one line per
# thread name ("all" for the whole process).
cpu_ticks() {
    python3 - "$1" <<'PY'
import os, sys
pid = sys.argv[1]
def ticks(stat):
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])
by_name = {}
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        stat = open(f"/proc/{pid}/task/{tid}/stat").read()
    except OSError:
        continue
    name = stat[stat.index("(") + 1:stat.rindex(")")].replace(" ", "_")
    by_name[name] = by_name.get(name, 0) + ticks(stat)
print("all", ticks(open(f"/proc/{pid}/stat").read()))
for name, value in sorted(by_name.items()):
    print(name, value)
PY
}

# run_wrk NAME PORT DURATION RUN_PREFIX PID [WORKLOAD]: wrk output in $WORK/NAME.txt, the
# server's CPU ticks before and after in $WORK/NAME.cpu0 and $WORK/NAME.cpu1.
run_wrk() {
    local seconds=${3%s}
    cpu_ticks "$5" >"$WORK/$1.cpu0"
    awk '/^wchar/ {print $2}' "/proc/$5/io" >"$WORK/$1.io0"
    WORKLOAD=${6:-new} RUN=$4 TOKEN=$TOKEN SOURCE=cms timeout $((seconds + 30)) \
        wrk -t "$THREADS" -c "$CONNECTIONS" -d "$3" --latency -s bench/ingest.lua \
        "http://127.0.0.1:$2" >"$WORK/$1.txt"
    cpu_ticks "$5" >"$WORK/$1.cpu1"
    awk '/^wchar/ {print $2}' "/proc/$5/io" >"$WORK/$1.io1"
}

echo "== warm-up ($WARMUP each)" >&2
run_wrk warm-bare "$BARE_PORT" "$WARMUP" wb "$BARE_PID"
run_wrk warm-real "$REAL_PORT" "$WARMUP" wr "$REAL_PID"
for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round: bare handler, then vod-purge with each workload ($WORKLOADS; $DURATION each)" >&2
    run_wrk "bare-$round" "$BARE_PORT" "$DURATION" "b$round" "$BARE_PID"
    for workload in $WORKLOADS; do
        run_wrk "$workload-$round" "$REAL_PORT" "$DURATION" "r$round" "$REAL_PID" "$workload"
    done
done

curl -fsS --max-time 10 -H "Authorization: Bearer $ADMIN" \
    "http://127.0.0.1:$REAL_PORT/queue" >"$WORK/queue.json"

python3 - "$WORK" "$ROUNDS" "$CONNECTIONS" "$THREADS" "$DURATION" "$WARMUP" "$(getconf CLK_TCK)" "$WORKLOADS" "$POOL" "$ZIPF_S" <<'PY'
import json, os, re, sys

work, rounds, conns, threads, duration, warmup, clk_tck, workloads, pool, skew = sys.argv[1:]
workloads = workloads.split()
pool = int(pool)
rounds = int(rounds)
clk_tck = int(clk_tck)

def cpu_us_per_request(name, requests):
    """Server CPU per answered request, in microseconds, by thread name ("all": the process)."""
    def load(suffix):
        pairs = (line.split() for line in open(os.path.join(work, f"{name}.{suffix}")))
        return {k: int(v) for k, v in pairs}
    before, after = load("cpu0"), load("cpu1")
    return {k: (after[k] - before.get(k, 0)) / clk_tck * 1e6 / max(requests, 1) for k in after}

def parse(name):
    text = open(os.path.join(work, name + ".txt")).read()
    def grab(pattern, default=None, cast=float):
        m = re.search(pattern, text)
        return cast(m.group(1)) if m else default
    def latency(p):
        m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % p, text, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return {
        "rps": grab(r"Requests/sec:\s+([\d.]+)"),
        "requests": grab(r"(\d+) requests in", cast=int),
        "non2xx": grab(r"Non-2xx or 3xx responses:\s+(\d+)", 0, int),
        "errors": sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", text)),
        "p50": latency(50),
        "p99": latency(99),
        "cpu": cpu_us_per_request(name, grab(r"(\d+) requests in", 0, int)),
        # Bytes the server passed to write(2) per answered request: WAL frames (4 KiB pages) and its answers.
        "written": (int(open(os.path.join(work, name + ".io1")).read() or 0)
                    - int(open(os.path.join(work, name + ".io0")).read() or 0))
                   / max(grab(r"(\d+) requests in", 0, int), 1),
    }

kinds = ["bare"] + workloads
results = {kind: [parse(f"{kind}-{r}") for r in range(1, rounds + 1)] for kind in kinds}
warm_real = parse("warm-real")
mean = lambda xs: sum(xs) / len(xs)

print(f"ingest benchmark: wrk, {conns} connections, {threads} threads, {rounds} round(s) of {duration} "
      f"per server and workload after a {warmup} warm-up each; 2 media IDs per request (native body, "
      f"bearer auth); workloads: {' '.join(workloads)} (pool of {pool} IDs, Zipf s = {skew})")
print("service: vod-purge serve, SQLite (WAL, synchronous=FULL) in a temp dir; vod.dry_run = true and "
      "queue.quiet = queue.max_wait = 1h, so the flusher sends nothing during the measurement")
print(f"{'round':<7}{'server':<16}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-202':>9}{'sock err':>9}{'CPU us/req':>12}")
for r in range(rounds):
    for kind in kinds:
        x = results[kind][r]
        label = "bare" if kind == "bare" else f"vod-purge {kind}"
        print(f"{r + 1:<7}{label:<16}{x['rps']:>10.0f}{x['p50']:>9.2f}{x['p99']:>9.2f}{x['non2xx']:>9}{x['errors']:>9}{x['cpu']['all']:>12.1f}")
rps = {kind: mean([x["rps"] for x in results[kind]]) for kind in kinds}
bare = rps["bare"]
print(f"bare handler: {bare:.0f} req/s (mean of rounds)")
for kind in workloads:
    line = f"{kind:<5} workload: {rps[kind]:.0f} req/s, ratio to the bare handler {rps[kind] / bare:.2f}"
    if kind == "new":
        line += f" (target >= 0.6: {'met' if rps[kind] / bare >= 0.6 else 'MISSED'})"
    elif "new" in rps:
        ratio = rps[kind] / rps["new"]
        target = 0.8 if kind == "pool" else None
        line += f", to the new-ID workload {ratio:.2f}"
        if target:
            line += f" (target >= {target}: {'met' if ratio >= target else 'MISSED'})"
    if kind == "zipf" and "pool" in rps:
        line += f", to the pool workload {rps['zipf'] / rps['pool']:.2f} (target >= 1: {'met' if rps['zipf'] >= rps['pool'] else 'MISSED'})"
    print(line)
# Where the service's CPU goes, per request: the HTTP workers (parse, check, answer) against the
# SQLite ingest writer (statements, commit, disk sync), beside the bare handler's whole process.
bare_cpu = mean([x["cpu"]["all"] for x in results["bare"]])
print(f"CPU per request: bare handler {bare_cpu:.1f} us")
for kind in workloads:
    threads_cpu = {}
    for x in results[kind]:
        for k, v in x["cpu"].items():
            threads_cpu[k] = threads_cpu.get(k, 0) + v / rounds
    http = sum(v for k, v in threads_cpu.items() if k.startswith("actix-server_wo"))
    writer = threads_cpu.get("sqlite-ingest", 0.0)
    written = mean([x["written"] for x in results[kind]]) / 1024
    print(f"  {kind:<5}: {threads_cpu.get('all', 0):.1f} us (HTTP workers {http:.1f} us, SQLite ingest "
          f"writer {writer:.1f} us, other threads {threads_cpu.get('all', 0) - http - writer:.1f} us); "
          f"{written:.1f} KiB written (WAL and answers) per request")

queue = json.load(open(os.path.join(work, "queue.json")))
fresh = [k for k in workloads if k in ("new", "urls")]
answered_new = (sum(x["requests"] - x["non2xx"] for k in fresh for x in results[k])
                + warm_real["requests"] - warm_real["non2xx"] + 1)
expected = 2 * answered_new
pooled = [k for k in workloads if k not in ("new", "urls")]
# wrk counts the answers it read before its time ran out; the requests still open then (at most one
# per connection and run) may have been stored as well.
new_runs = 1 + rounds * len(fresh)
ceiling = expected + (pool if pooled else 0) + 2 * int(conns) * new_runs
pending = queue.get("pending")
ok = pending is not None and expected <= pending <= ceiling
print(f"store check    : {pending} items pending after the run; new-ID requests stored {expected} "
      f"(2 per answered request, including warm-up and probe)"
      + (f", and the pool at most {pool} more" if pooled else "")
      + f" (and at most {2 * int(conns) * new_runs} of requests open when wrk stopped)"
      + f": {'ok' if ok else 'MISMATCH'}")
bad = sum(x["non2xx"] + x["errors"] for k in results for x in results[k])
if bad:
    print(f"warning: {bad} non-202 answers or socket errors")
PY
