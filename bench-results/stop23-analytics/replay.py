# Stop 23 experiment script (psycopg2, redis-cli). Replays the term ids an engine backfill
# published to $DB:term_updates through refresh_analytics (chunks of $CHUNK ids, one READ
# COMMITTED transaction each, as the worker does), from emptied level 3 tables, $ROUNDS times,
# and prints the backend's CPU per term id; with ROWS=1 also the rows read from each looked-up
# table per id (pg_stat_user_tables, reset by the caller); then checks level 3 against the
# reference views (snapshot.compare, 0/0 = exact). Load the SQL to compare with psql -f first;
# forget-statistics.sql puts the database back in its never-analyzed state.
import json, os, subprocess, sys, time, psycopg2
DB = os.environ.get("DB", "rps_wk")
raw = subprocess.run(["redis-cli", "--raw", "xrange", f"{DB}:term_updates", "-", "+"], capture_output=True, text=True).stdout
ids = []
for line in raw.splitlines():
    if line.startswith("["):
        ids.extend(json.loads(line))
CH = int(os.environ.get("CHUNK", "500")); batches = [ids[i:i+CH] for i in range(0, len(ids), CH)]
conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=DB)
cur = conn.cursor()
cur.execute("SELECT pg_backend_pid()"); pid = cur.fetchone()[0]
def cpu():
    f = open(f"/proc/{pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
rounds = int(os.environ.get("ROUNDS", "1"))
for r in range(rounds):
    cur.execute("TRUNCATE triple_vault, triple_term, predicate_object, subject_predicate"); conn.commit()
    c0, t0, triples = cpu(), time.time(), 0
    for b in batches:
        cur.execute("SELECT refresh_analytics(%s)", (b,)); triples += cur.fetchone()[0]; conn.commit()
    c1, t1 = cpu(), time.time()
    print(f"round {r}: {len(ids)} ids in {len(batches)} chunks, {triples} triples, wall {t1-t0:.2f} s, backend cpu {c1-c0:.2f} s, {1e6*(c1-c0)/len(ids):.1f} us/id")
if os.environ.get("ROWS"):
    cur.execute("SELECT pg_stat_force_next_flush()"); conn.commit(); time.sleep(1.5)
    c2 = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=DB).cursor()
    c2.execute("SELECT relname, seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables WHERE relname IN ('triple','vault','triple_vault','triple_term') ORDER BY 1")
    rows = c2.fetchall(); print("rows read per id: " + " ".join(f"{r}={n/len(ids)/rounds:.1f}" for r, n in rows))
for t in ["triple_vault", "triple_term", "predicate_object", "subject_predicate"]:
    cur.execute("SELECT * FROM snapshot.compare(%s)", (t,)); print(t, cur.fetchone())
conn.commit()
