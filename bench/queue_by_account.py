"""Each account's queue figures at 1,000,000 pending items in two accounts (SQLite): one
statement with MIN(first_seen), which reads every table row, against the counts from one covering
index and each account's oldest from another. Run from the repository's root:
    python3 bench/queue_by_account.py
Builds /tmp/queue_by_account.db from migrations/sqlite/*.sql (about a minute), prints the best of
three runs of each, and the plans."""
import glob
import os
import sqlite3
import time

if os.path.exists("/tmp/queue_by_account.db"):
    os.remove("/tmp/queue_by_account.db")
db = sqlite3.connect("/tmp/queue_by_account.db")
for f in sorted(glob.glob("migrations/sqlite/*.sql")):
    db.executescript(open(f).read())
db.execute("INSERT INTO option_sets VALUES ('fp', '{}')")
db.execute("""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
INSERT INTO items (account, media_id, task, fingerprint, source, first_seen, last_seen, deadline, due_at, events)
SELECT CASE WHEN i % 2 = 0 THEN 'default' ELSE 'intl' END, printf('m%07d', i), 'Refresh', 'fp', 'cms', i, i, i + 1000, CASE WHEN i % 4 = 0 THEN 10 ELSE 2000000 END, 1 FROM n""")
db.commit()
def t(sql, args=()):
    best = 1e9
    for _ in range(3):
        s = time.perf_counter(); r = db.execute(sql, args).fetchall(); best = min(best, time.perf_counter() - s)
    return best, r
now = 1000
one = "SELECT account, COUNT(*), COALESCE(SUM(CASE WHEN due_at <= ?1 THEN 1 ELSE 0 END), 0), MIN(first_seen) FROM items GROUP BY account ORDER BY account"
two = "SELECT account, COUNT(*), COALESCE(SUM(CASE WHEN due_at <= ?1 THEN 1 ELSE 0 END), 0) FROM items GROUP BY account ORDER BY account"
mn = "SELECT MIN(first_seen) FROM items INDEXED BY items_group_order WHERE account = ?"
a, r1 = t(one, (now,))
b, r2 = t(two, (now,))
c1, m1 = t(mn, ("default",)); c2, m2 = t(mn, ("intl",))
print(f"one statement with MIN(first_seen): {a*1000:.0f} ms {r1}")
print(f"counts alone: {b*1000:.0f} ms; MIN per account: {c1*1000:.0f} + {c2*1000:.0f} ms {m1} {m2}; together {(b+c1+c2)*1000:.0f} ms")
print(db.execute("EXPLAIN QUERY PLAN " + two, (now,)).fetchall())
print(db.execute("EXPLAIN QUERY PLAN " + mn, ("default",)).fetchall())
