#!/usr/bin/env python3
"""Added latency on an idle service: how long after an item's due time plus linger its call
reaches VOD (the simulator), for one ID at a time, so that nothing else is pending.

    python3 bench/latency.py [--bin target/release/vod-purge] [--baseline OTHER_BIN] [--samples 60]
                             [--postgres postgres://postgres@127.0.0.1:5432/test]

Starts the simulator and `serve` (SQLite, quiet 100 ms, linger 50 ms) on loopback ports for each
binary, sends one webhook at a random moment, waits for its call, and repeats. Prints the added
latency (call time - send time - quiet - linger) as p50 / p90 / p99 / max, per binary.

With --postgres, two replicas share a fresh schema of that database (dropped afterwards) and the
webhooks go to each in turn, so half of them are stored by the replica that does not flush.
"""
import argparse, json, os, random, signal, socket, statistics, subprocess, sys, tempfile, time
import urllib.request

QUIET_MS, LINGER_MS = 100, 50


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.05)
    sys.exit(f"{url} did not answer")


def request(method, url, body=None, token=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=5) as r:
        data = r.read()
        return json.loads(data) if data else None


def psql(url, sql):
    subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def measure(binary, samples, postgres=None):
    work = tempfile.mkdtemp(prefix="vod-purge-latency-")
    sim_port = free_port()
    sim = subprocess.Popen([binary, "sim", "--listen", f"127.0.0.1:{sim_port}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if postgres:
        schema = f"latency_{os.getpid()}_{random.randrange(1 << 30)}"
        psql(postgres, f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in postgres else "?"
        store = f"{postgres}{sep}options=-csearch_path%3D{schema}"
        ports = [free_port(), free_port()]
    else:
        schema, store, ports = None, f"sqlite://{work}/store.db", [free_port()]
    apps = []
    try:
        for i, port in enumerate(ports):
            apps.append(start_app(binary, work, i, port, store, sim_port))
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout=20)
        return sample(samples, ports, f"http://127.0.0.1:{sim_port}")
    finally:
        for p in apps + [sim]:
            p.send_signal(signal.SIGTERM)
        for p in apps + [sim]:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if schema:
            psql(postgres, f"DROP SCHEMA {schema} CASCADE")


def start_app(binary, work, i, app_port, store, sim_port):
    config = os.path.join(work, f"config{i}.toml")
    with open(config, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{app_port}"
admin_token = "admin"
[store]
url = "{store}"
[vod]
endpoint = "http://127.0.0.1:{sim_port}"
credentials = "config"
access_key_id = "testid"
access_key_secret = "testsecret"
check_after = "0s"
quota_poll_interval = "0s"
[queue]
quiet = "{QUIET_MS}ms"
max_wait = "5s"
linger = "{LINGER_MS}ms"
[[sources]]
name = "cms"
auth = "bearer"
secrets = ["token"]
format = "native"
""")
    return subprocess.Popen([binary, "serve", "--config", config], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", "")})


def sample(samples, ports, sim_url):
    """The added latency of `samples` webhooks, after two discarded ones (the first waits for a
    replica to take the leadership)."""
    added = []
    for n in range(-2, samples):
        time.sleep(random.uniform(0.05, 0.15))
        media_id = f"lat{n + 2}"
        app_port = ports[(n + 2) % len(ports)]
        sent_ms = time.time() * 1000
        request("POST", f"http://127.0.0.1:{app_port}/webhooks/cms", {"media_ids": [media_id]}, "token")
        deadline = time.time() + 5
        at = None
        while at is None and time.time() < deadline:
            calls = request("GET", f"{sim_url}/_sim/calls")
            at = next((c["at_ms"] for c in calls if media_id in c["media_ids"] and c["status"] == 200), None)
            if at is None:
                time.sleep(0.02)
        if at is None:
            sys.exit(f"{media_id} was not sent within 5 s")
        if n >= 0:
            added.append(at - sent_ms - QUIET_MS - LINGER_MS)
        # A short list keeps each look at the simulator quick: its one worker also answers
        # the service's call, whose arrival time is what is measured.
        request("DELETE", f"{sim_url}/_sim/calls")
    return added


def summary(name, added):
    q = statistics.quantiles(added, n=100, method="inclusive")
    return (f"{name:<10} n={len(added)}  p50 {q[49]:6.1f} ms  p90 {q[89]:6.1f} ms  "
            f"p99 {q[98]:6.1f} ms  max {max(added):6.1f} ms")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="target/release/vod-purge")
    p.add_argument("--baseline")
    p.add_argument("--samples", type=int, default=60)
    p.add_argument("--postgres", help="two replicas on this PostgreSQL database instead of SQLite")
    args = p.parse_args()
    where = "two PostgreSQL replicas, webhooks to each in turn" if args.postgres else "SQLite"
    print(f"added latency on an idle service (call time - send time - quiet {QUIET_MS} ms - linger {LINGER_MS} ms), "
          f"one ID at a time, {where}, loopback")
    if args.baseline:
        print(summary("baseline", measure(args.baseline, args.samples, args.postgres)))
    print(summary("this", measure(args.bin, args.samples, args.postgres)))


if __name__ == "__main__":
    main()
