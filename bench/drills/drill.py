#!/usr/bin/env python3
"""Clients and checks shared by the drills (python3 standard library only).

Subcommands:
  load     post native webhook bodies with distinct media IDs from several threads and record
           every ID answered 202 (one per line) in --acked
  drain    wait until GET /queue reports nothing pending, in flight or retrying
  calls    summarise a simulator calls log (JSON lines) against a file of acknowledged IDs
  mixed    the soak's mixed load: webhooks, reads, operator retries; counts statuses
"""
import argparse
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse
from collections import Counter


def conn_for(url, timeout=10):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)


class Client:
    """One keep-alive connection that reconnects after any failure."""

    def __init__(self, url, timeout=10):
        self.url = url
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        if self.conn is None:
            self.conn = conn_for(self.url, self.timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
            return resp.status, data
        except Exception:
            self.close()
            raise

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None


def cmd_load(args):
    stop_at = time.monotonic() + args.duration
    per_thread_rate = args.rate / args.threads if args.rate > 0 else 0
    lock = threading.Lock()
    statuses = Counter()
    acked_total = [0]
    errors = Counter()
    out = open(args.acked, "a")

    def worker(t):
        client = Client(args.url)
        n = 0
        next_at = time.monotonic()
        headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
        while time.monotonic() < stop_at:
            if args.stop_file and _exists(args.stop_file):
                break
            if per_thread_rate:
                next_at += 1.0 / per_thread_rate
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_at = time.monotonic()
            if args.pool:
                # Repeated IDs: most events merge into a pending item (or follow a call in flight).
                ids = [f"{args.prefix}p{k}" for k in random.sample(range(args.pool), args.ids_per_request)]
            else:
                ids = [f"{args.prefix}t{t}n{n + i}" for i in range(args.ids_per_request)]
                n += args.ids_per_request
            body = json.dumps({"media_ids": ids, "task": "Refresh"})
            sent_ms = int(time.time() * 1000)
            try:
                status, data = client.request("POST", f"/webhooks/{args.source}", body, headers)
            except Exception as e:  # the service is down (being killed): these IDs are unknown
                with lock:
                    errors[type(e).__name__] += 1
                time.sleep(0.02)
                continue
            with lock:
                statuses[status] += 1
            if status == 202:
                receipt = json.loads(data)
                got = set(receipt.get("accepted", [])) | set(receipt.get("merged", []))
                if got != set(ids):
                    with lock:
                        errors["receipt_mismatch"] += 1
                with lock:
                    # One line per acknowledged event: the ID and when its request was sent.
                    out.write("".join(f"{i}\t{sent_ms}\n" for i in ids))
                    acked_total[0] += len(ids)
        client.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(args.threads)]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out.close()
    elapsed = time.monotonic() - started
    summary = {
        "seconds": round(elapsed, 1),
        "requests": sum(statuses.values()),
        "requests_per_second": round(sum(statuses.values()) / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "connection_errors": dict(errors),
        "acked_ids": acked_total[0],
    }
    print(json.dumps(summary))


def _exists(path):
    try:
        open(path).close()
        return True
    except OSError:
        return False


def get_json(url, path, token):
    c = Client(url)
    status, data = c.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    c.close()
    if status != 200:
        raise RuntimeError(f"GET {path}: {status}")
    return json.loads(data)


def cmd_drain(args):
    end = time.monotonic() + args.timeout
    last = None
    while time.monotonic() < end:
        try:
            q = get_json(args.url, "/queue", args.token)
            last = q
            if q["pending"] == 0 and q["in_flight_batches"] == 0 and q["retrying_batches"] == 0:
                print(json.dumps(q))
                return
        except Exception as e:
            last = repr(e)
        time.sleep(0.25)
    sys.exit(f"the queue did not drain within {args.timeout}s: {last}")


def read_calls(path):
    calls = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                calls.append(json.loads(line))
    return [c for c in calls if c.get("action") == "RefreshMediaPlayUrls"]


def cmd_calls(args):
    calls = read_calls(args.calls_log)
    acked = set()
    events = []  # (ID, sent at), when the acked file has times
    with open(args.acked) as f:
        for line in f:
            line = line.strip()
            if line:
                media_id, _, sent_ms = line.partition("\t")
                acked.add(media_id)
                if sent_ms:
                    events.append((media_id, int(sent_ms)))
    ok = [c for c in calls if c["status"] == 200]
    # Every acknowledged event needs a successful call with its ID that started after it.
    latest = {}
    for c in ok:
        for m in c["media_ids"]:
            latest[m] = max(latest.get(m, 0), c["at_ms"])
    unpurged = [(m, t) for m, t in events if latest.get(m, -1) < t]
    sends = Counter()
    for c in ok:
        for m in c["media_ids"]:
            sends[m] += 1
    sent = set(sends)
    lost = sorted(acked - sent)
    dup_sends = sum(n - 1 for n in sends.values() if n > 1)
    result = {
        "acknowledged_ids": len(acked),
        "ids_sent": len(sent & acked),
        "ids_lost": len(lost),
        "lost_sample": lost[:10],
        "duplicate_sends": dup_sends,
        "ids_sent_more_than_once": sum(1 for n in sends.values() if n > 1),
        "ids_sent_but_not_acknowledged": len(sent - acked),
        "calls_total": len(calls),
        "calls_ok": len(ok),
        "calls_failed": len(calls) - len(ok),
        "max_ids_per_call": max((len(c["media_ids"]) for c in ok), default=0),
        "acknowledged_events": len(events),
        "events_without_a_later_purge": len(unpurged),
        "unpurged_sample": unpurged[:10],
    }
    print(json.dumps(result))
    if lost or unpurged:
        sys.exit(1)


def cmd_outage(args):
    """Call rates before, during and after an outage window, from the simulator's calls log."""
    calls = read_calls(args.calls_log)
    start, end = args.start_ms, args.end_ms
    during = [c for c in calls if start <= c["at_ms"] < end]
    after = [c for c in calls if c["at_ms"] >= end]
    def per_second(cs, t0, t1):
        buckets = Counter(int((c["at_ms"] - t0) // 1000) for c in cs)
        n = max(1, int((t1 - t0 + 999) // 1000))
        return [buckets.get(i, 0) for i in range(n)]
    d = per_second(during, start, end)
    # The drain: from the end of the outage to the last call that carried an ID.
    last = max((c["at_ms"] for c in after), default=end)
    a = per_second(after, end, last + 1)
    full = [c for c in after if c["status"] == 200 and len(c["media_ids"]) == 20]
    busy = a[1:-1] if len(a) > 2 else a
    result = {
        "outage_seconds": round((end - start) / 1000, 1),
        "calls_during_outage": len(during),
        "failed_calls_during_outage": sum(1 for c in during if c["status"] != 200),
        "calls_per_second_during_outage_mean": round(len(during) / max(1e-9, (end - start) / 1000), 2),
        "calls_per_second_during_outage_max_1s": max(d, default=0),
        "calls_per_second_during_outage_last_30s_mean": round(sum(d[-30:]) / max(1, len(d[-30:])), 2),
        "per_second_during_outage": d,
        "calls_after_outage": len(after),
        "drain_seconds": round((last - end) / 1000, 1),
        "drain_calls_per_second_mean": round(len(after) / max(1e-9, (last - end) / 1000), 1),
        "drain_calls_per_second_max_1s": max(a, default=0),
        "drain_calls_per_second_mean_full_seconds": round(sum(busy) / max(1, len(busy)), 1),
        "full_batches_after_outage": len(full),
        "first_success_after_outage_seconds": round((min((c["at_ms"] for c in after if c["status"] == 200), default=end) - end) / 1000, 1),
        "seconds_at_45_calls_per_second_or_more_after_outage": sum(1 for x in a if x >= 45),
        "per_second_after_outage": a[:40],
    }
    print(json.dumps(result))


def cmd_mixed(args):
    """Soak load: webhook posts, reads, and operator retries of failed jobs."""
    stop_at = time.monotonic() + args.duration
    lock = threading.Lock()
    statuses = Counter()
    by_path = Counter()
    five = []
    errors = Counter()
    acked = open(args.acked, "a")
    auth = {"Authorization": f"Bearer {args.admin_token}"}

    def record(kind, status, data):
        with lock:
            statuses[status] += 1
            by_path[f"{kind} {status}"] += 1
            if status >= 500 and len(five) < 20:
                five.append((kind, status, data[:300].decode("utf-8", "replace")))

    def writer(t):
        client = Client(args.url)
        n = 0
        headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            next_at += args.threads / args.rate
            d = next_at - time.monotonic()
            if d > 0:
                time.sleep(d)
            # Some IDs repeat (merges), most are new.
            ids = [f"{args.prefix}w{t}n{n + i}" for i in range(4)]
            if n > 100 and random.random() < 0.2:
                ids[0] = f"{args.prefix}w{t}n{random.randrange(n)}"
            n += 4
            body = json.dumps({"media_ids": ids, "task": random.choice(["Refresh", "Refresh", "Preload"])})
            try:
                status, data = client.request("POST", "/webhooks/cms", body, headers)
            except Exception as e:
                with lock:
                    errors[type(e).__name__] += 1
                continue
            record("POST /webhooks/cms", status, data)
            if status == 202:
                with lock:
                    acked.write("".join(i + "\n" for i in ids))

    def reader():
        client = Client(args.url)
        paths = ["/queue", "/metrics", "/jobs?limit=20", "/jobs?status=failed&limit=50", "/healthz", "/readyz"]
        while time.monotonic() < stop_at:
            path = random.choice(paths + [f"/media/{args.prefix}w0n{random.randrange(1000)}"])
            try:
                status, data = client.request("GET", path, headers=auth)
            except Exception as e:
                with lock:
                    errors[type(e).__name__] += 1
                continue
            record("GET " + path.split("?")[0].rsplit("/", 1)[0] if path.startswith("/media/") else "GET " + path.split("?")[0], status, data)
            time.sleep(1.0 / args.read_rate)

    retried = Counter()

    def operator():
        while time.monotonic() < stop_at:
            time.sleep(args.retry_every)
            # A fresh connection each round: the server closes keep-alive connections idle 5 s.
            client = Client(args.url)
            try:
                status, data = client.request("GET", "/jobs?status=failed&limit=100", headers=auth)
                record("GET /jobs", status, data)
                if status != 200:
                    continue
                for job in json.loads(data)["jobs"]:
                    status, data = client.request("POST", f"/jobs/{job['id']}/retry", headers=auth)
                    record("POST /jobs/{id}/retry", status, data)
                    with lock:
                        retried[status] += 1
            except Exception as e:
                with lock:
                    errors[type(e).__name__] += 1
            client.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(args.threads)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    threads.append(threading.Thread(target=operator))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    acked.close()
    print(json.dumps({
        "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "by_endpoint": dict(sorted(by_path.items())),
        "operator_retries": {str(k): v for k, v in retried.items()},
        "errors": dict(errors),
        "5xx_samples": five,
    }))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("load")
    s.add_argument("--url", required=True)
    s.add_argument("--source", default="cms")
    s.add_argument("--token", required=True)
    s.add_argument("--threads", type=int, default=4)
    s.add_argument("--ids-per-request", type=int, default=4)
    s.add_argument("--rate", type=float, default=0, help="requests per second in total; 0 = as fast as possible")
    s.add_argument("--duration", type=float, default=30)
    s.add_argument("--stop-file")
    s.add_argument("--prefix", default="d")
    s.add_argument("--acked", required=True)
    s.add_argument("--pool", type=int, default=0, help="draw IDs from a pool of this many (0: new IDs)")
    s = sub.add_parser("drain")
    s.add_argument("--url", required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--timeout", type=float, default=120)
    s = sub.add_parser("calls")
    s.add_argument("--calls-log", required=True)
    s.add_argument("--acked", required=True)
    s = sub.add_parser("outage")
    s.add_argument("--calls-log", required=True)
    s.add_argument("--start-ms", type=int, required=True)
    s.add_argument("--end-ms", type=int, required=True)
    s = sub.add_parser("mixed")
    s.add_argument("--url", required=True)
    s.add_argument("--token", required=True)
    s.add_argument("--admin-token", required=True)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--rate", type=float, default=40, help="webhook requests per second in total")
    s.add_argument("--read-rate", type=float, default=10, help="reads per second per reader")
    s.add_argument("--retry-every", type=float, default=5)
    s.add_argument("--duration", type=float, default=600)
    s.add_argument("--prefix", default="s")
    s.add_argument("--acked", required=True)
    args = p.parse_args()
    {"load": cmd_load, "drain": cmd_drain, "calls": cmd_calls, "outage": cmd_outage, "mixed": cmd_mixed}[args.cmd](args)


if __name__ == "__main__":
    main()
