"""Sustained load: many simulated training processes against the multi-process server on PostgreSQL.

    .venv/bin/python bench/load.py [--clients 50] [--duration 300] [--series 20] [--rate 100]
        [--upload-every 30] [--query-every 10] [--web-workers 4] [--celery 2] [--knee]

Each simulated training process creates a run and, once a second, sends one batch holding ``--rate``
new points of each of its ``--series`` float series (the client's wire format: MessagePack,
``{"stream", "seq", "ops"}``, each series' columns packed as the client packs them; ``--wire lists``:
per-point lists), uploads a 256 KiB file every ``--upload-every`` seconds (the file, then a
batch that attaches it) and runs a query of the run table every ``--query-every`` seconds. A refused or
failed batch is sent again with the same ``(stream, seq)``, as the client does, so nothing is lost
unless the server loses it. The processes are threads spread over ``--procs`` OS processes.

Reported: batch acknowledgement latency p50/p99 (send to response), sustained points/s (acknowledged
points over the measured time), errors (non-2xx answers, connection failures), lost points (sent
points missing from each series' count afterwards), and the CPU seconds used by the web server
(gunicorn), the Celery workers, PostgreSQL and the load generator itself over the run.

``--knee`` then raises the number of clients (×1.5 per level, ``--knee-duration`` seconds each) until
p99 passes 1 s, and reports the level and what was saturated.

The server is a throwaway (``bench/common.py``'s RunstoreServer): database ``runstore_bench``
(TimescaleDB when installed), gunicorn ``--web-workers`` × 4 threads, ``--celery`` Celery workers on
Redis database 5 of the local Redis (``--redis``), roll-ups and previews as in production.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import random
import resource
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PG_BENCH_DB, PG_MAINTENANCE_DB, PYTHON, RunstoreServer, log, pg_connect, save_result  # noqa: E402

HEADERS = {"Content-Type": "application/msgpack", "Accept": "application/json"}


def simulated_process(
    url: str, token: str, index: int, args: dict, start_at: float, stop_at: float, out: list, lock: threading.Lock
) -> None:
    """One training process: a run, a batch a second, an upload and a query now and then."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    rng = random.Random(index)
    stats = {"latencies": [], "errors": 0, "points": 0, "sent": {}, "uploads": 0, "queries": [], "run": ""}
    time.sleep(max(0.0, start_at - time.time()) + rng.random())  # spread the clients over the first second
    try:
        response = session.post(
            f"{url}/api/v1/runs/", json={"project": "bench/load", "name": f"sim-{index}"}, timeout=60
        )
        response.raise_for_status()
    except Exception:  # noqa: BLE001 - counted, this simulated process gives up
        stats["errors"] += 1
        with lock:
            out.append(stats)
        return
    run = response.json()["uuid"]
    stats["run"] = run
    batch_url = f"{url}/api/v1/runs/{run}/batch"
    stream, seq, step = uuid.uuid4().hex, 0, 0
    rate, series = args["rate"], args["series"]
    next_upload = time.time() + rng.uniform(0, args["upload_every"])
    next_query = time.time() + rng.uniform(0, args["query_every"])
    tick = time.time()
    while time.time() < stop_at:  # by the clock: a client the server holds back sends fewer batches
        now = time.time()
        values = [rng.gauss(1.0 / (1 + step / 1000), 0.01) for _ in range(rate)]
        steps = list(range(step, step + rate))
        timestamps = [now + i / rate for i in range(rate)]
        if args["wire"] == "packed":  # as the client sends float appends: little-endian binary columns
            columns = {
                "kind": "float",
                "values": struct.pack(f"<{rate}d", *values),
                "steps": struct.pack(f"<{rate}q", *steps),
                "timestamps": struct.pack(f"<{rate}d", *timestamps),
            }
        else:
            columns = {"values": values, "steps": steps, "timestamps": timestamps}
        ops = [{"op": "append", "path": f"train/s{s}", **columns} for s in range(series)]
        attach = None
        if now >= next_upload:
            content = os.urandom(256 * 1024)
            try:
                up = session.post(f"{url}/api/v1/runs/{run}/uploads", files={"file": ("ckpt.bin", content)}, timeout=60)
                if up.status_code in (200, 201):
                    attach = {
                        "op": "upload",
                        "path": f"checkpoints/{stats['uploads']}",
                        "sha256": hashlib.sha256(content).hexdigest(),
                        "name": "ckpt.bin",
                    }
                    stats["uploads"] += 1
                else:
                    stats["errors"] += 1
            except requests.RequestException:
                stats["errors"] += 1
            next_upload += args["upload_every"]
        if attach is not None:
            ops.append(attach)
        body = msgpack.packb({"stream": stream, "seq": seq, "ops": ops})
        for _attempt in range(60):  # as the client: the same (stream, seq) again until it is acknowledged
            sent = time.perf_counter()
            try:
                response = session.post(batch_url, data=body, headers=HEADERS, timeout=60)
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            stats["latencies"].append(time.perf_counter() - sent)
            if ok:
                break
            stats["errors"] += 1
            time.sleep(1)
        else:
            raise RuntimeError(f"batch {seq} of {run} never acknowledged")
        stats["points"] += rate * series
        seq, step = seq + 1, step + rate
        if time.time() >= next_query:
            sent = time.perf_counter()
            try:
                q = session.get(
                    f"{url}/api/v1/runs/",
                    params={"project": "bench/load", "query": "train/s0 < 0.9", "sort": "-train/s0", "limit": 50},
                    timeout=60,
                )
                if q.status_code != 200:
                    stats["errors"] += 1
            except requests.RequestException:
                stats["errors"] += 1
            stats["queries"].append(time.perf_counter() - sent)
            next_query += args["query_every"]
        tick = max(tick + 1.0, time.time())  # a late batch is not made up for: the offered rate, at most
        time.sleep(max(0.0, tick - time.time()))
    stats["sent"] = {f"train/s{s}": step for s in range(series)}
    stats["behind"] = max(0.0, time.time() - stop_at)
    with lock:
        out.append(stats)


def generator(url: str, token: str, indexes: list[int], args: dict, start_at: float, stop_at: float, queue) -> None:
    out: list = []
    lock = threading.Lock()
    threads = [
        threading.Thread(target=simulated_process, args=(url, token, i, args, start_at, stop_at, out, lock))
        for i in indexes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    queue.put((out, usage.ru_utime + usage.ru_stime))


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of these processes, their living descendants and the children they have reaped
    (PostgreSQL's backends come and go with connections)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
            for child in proc.children(recursive=True):
                times = child.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def postgres_pids() -> list[int]:
    """The postmasters (each counts its backends, living and exited)."""
    import psutil

    names = ("postgres", "postmaster")
    return [
        p.pid
        for p in psutil.process_iter(["name", "ppid"])
        if p.info["name"] in names and psutil.Process(p.info["ppid"]).name() not in names
    ]


def statements_snapshot() -> dict | None:
    """pg_stat_statements' counters for the benchmark database, by statement (None when the extension
    is not loaded). Two snapshots' difference is what ran in between; no reset, so the other
    databases' counters are left alone. Read from the maintenance database, where the extension's
    view is installed (it shows every database's statements)."""
    try:
        with pg_connect(PG_MAINTENANCE_DB) as conn:
            rows = conn.execute(
                "SELECT queryid, calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) "
                "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)",
                [PG_BENCH_DB],
            ).fetchall()
    except Exception as exc:  # noqa: BLE001 - the statement counts are extra, the run goes on
        log(f"pg_stat_statements unavailable: {exc}")
        return None
    return {qid: (calls, ms, n, query) for qid, calls, ms, n, query in rows}


def statements_report(before: dict, after: dict, top: int) -> dict:
    """Calls and execution time in all between two snapshots, and the ``top`` statements by time."""
    diff = []
    for qid, (calls, ms, n, query) in after.items():
        c0, ms0, n0, _ = before.get(qid, (0, 0.0, 0, ""))
        if calls > c0:
            diff.append({"calls": calls - c0, "ms": round(ms - ms0), "rows": n - n0, "query": query})
    diff.sort(key=lambda row: -row["ms"])
    return {"calls": sum(r["calls"] for r in diff), "exec_ms": sum(r["ms"] for r in diff), "top": diff[:top]}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def level(server: RunstoreServer, workers: list[subprocess.Popen], clients: int, duration: float, args: dict) -> dict:
    """``clients`` simulated processes for ``duration`` seconds; the measured numbers."""
    procs = max(1, min(args["procs"], clients))
    start_at = time.time() + 3
    stop_at = start_at + duration
    queue: mp.Queue = mp.Queue()
    spread = [list(range(p, clients, procs)) for p in range(procs)]
    generators = [
        mp.Process(target=generator, args=(server.url, server.token, idx, args, start_at, stop_at, queue))
        for idx in spread
    ]
    web_pids, worker_pids = [server.proc.pid], [w.pid for w in workers]
    time.sleep(max(0.0, start_at - time.time() - 2))
    snapshot = statements_snapshot() if args["statements"] else None
    for g in generators:
        g.start()
    cpu0 = (cpu_seconds(web_pids), cpu_seconds(worker_pids), cpu_seconds(postgres_pids()), time.time())
    results: list = []
    generator_cpu = 0.0
    for _ in generators:
        out, used = queue.get(timeout=duration + 900)
        results += out
        generator_cpu += used
    cpu1 = (cpu_seconds(web_pids), cpu_seconds(worker_pids), cpu_seconds(postgres_pids()), time.time())
    statements = None
    if snapshot is not None:
        after = statements_snapshot()
        statements = statements_report(snapshot, after, args["statements"]) if after is not None else None
    for g in generators:
        g.join(60)
    elapsed = cpu1[3] - cpu0[3]
    latencies = [x for r in results for x in r["latencies"]]
    queries = [x for r in results for x in r["queries"]]
    points = sum(r["points"] for r in results)
    # Lost: what each run's series count says against what was acknowledged to the simulated process.
    session = server.session()
    lost = 0
    for r in results:
        if not r["run"]:
            continue
        fields = session.get(f"{server.url}/api/v1/runs/{r['run']}/attributes", timeout=120).json()["fields"]
        counts = {f["path"]: int((f["value"] or {}).get("count") or 0) for f in fields if f["type"] == "float_series"}
        lost += sum(sent - counts.get(path, 0) for path, sent in r["sent"].items())
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "batches": len(latencies),
        "p50_ms": round(pct(latencies, 0.50) * 1000, 1),
        "p99_ms": round(pct(latencies, 0.99) * 1000, 1),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
        "points_per_s": round(points / duration),
        "offered_points_per_s": clients * args["series"] * args["rate"],
        "errors": sum(r["errors"] for r in results),
        "lost": lost,
        "uploads": sum(r["uploads"] for r in results),
        "query_p50_ms": round(pct(queries, 0.5) * 1000, 1),
        "query_p99_ms": round(pct(queries, 0.99) * 1000, 1),
        "cpu_percent": {
            "web": round(100 * (cpu1[0] - cpu0[0]) / elapsed),
            "workers": round(100 * (cpu1[1] - cpu0[1]) / elapsed),
            "postgres": round(100 * (cpu1[2] - cpu0[2]) / elapsed),
            "load generator": round(100 * generator_cpu / elapsed),
        },
        "load_average": os.getloadavg()[0],
        "db_statements_per_s": round(statements["calls"] / elapsed) if statements else None,
        "db_exec_ms_per_s": round(statements["exec_ms"] / elapsed) if statements else None,
        "db_top_statements": statements["top"] if statements else None,
    }


def report(result: dict) -> None:
    cpu = ", ".join(f"{k} {v}%" for k, v in result["cpu_percent"].items() if v is not None)
    log(
        f"{result['clients']} clients, {result['seconds']} s: batch ack p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms (max {result['max_ms']}); {result['points_per_s']:,} points/s acknowledged "
        f"of {result['offered_points_per_s']:,} offered; "
        f"{result['errors']} errors; {result['lost']} lost; {result['uploads']} uploads; "
        f"query p50/p99 {result['query_p50_ms']}/{result['query_p99_ms']} ms; CPU: {cpu}; "
        f"load {result['load_average']:.1f}"
    )
    if result["db_statements_per_s"] is not None:
        log(
            f"database: {result['db_statements_per_s']:,} statements/s, "
            f"{result['db_exec_ms_per_s']:,} ms of execution per s; by total execution time:"
        )
        for row in result["db_top_statements"]:
            log(f"  {row['ms']:>8,} ms {row['calls']:>8,} calls {row['rows']:>9,} rows  {row['query']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=300)
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--rate", type=int, default=100, help="points per second per series")
    parser.add_argument("--upload-every", type=float, default=30)
    parser.add_argument("--query-every", type=float, default=10)
    parser.add_argument("--procs", type=int, default=4, help="OS processes the simulated clients are spread over")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--celery", type=int, default=2)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--knee", action="store_true")
    parser.add_argument("--knee-duration", type=float, default=60)
    parser.add_argument("--knee-max", type=int, default=400)
    parser.add_argument("--source", default="worktree")
    parser.add_argument(
        "--statements",
        type=int,
        default=15,
        help="report the database's statements per second and its top N statements by execution time "
        "(pg_stat_statements; 0: off)",
    )
    parser.add_argument(
        "--wire",
        choices=("packed", "lists"),
        default="packed",
        help="float appends as the client sends them (packed binary columns) or as per-point lists",
    )
    args = parser.parse_args()
    options = {
        "rate": args.rate,
        "series": args.series,
        "upload_every": args.upload_every,
        "query_every": args.query_every,
        "procs": args.procs,
        "wire": args.wire,
        "statements": args.statements,
    }
    server = RunstoreServer("postgres", workers=args.web_workers, threads=4, source=args.source, celery=False)
    server.env.update(
        {"CELERY_BROKER_URL": args.redis, "CELERY_RESULT_BACKEND": args.redis, "RUNSTORE_STORAGE": "local"}
    )
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    results = []
    with server:
        workers = [
            subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "celery",
                    "-A",
                    "tracker",
                    "worker",
                    "-c",
                    "1",
                    "-Q",
                    "ingest,media,maintenance",
                    "-n",
                    f"load{i}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    "warning",
                ],
                cwd=server.src,
                env=server.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for i in range(args.celery)
        ]
        try:
            log(f"server {server.url}: gunicorn {args.web_workers}×4 threads, {args.celery} Celery workers, PostgreSQL")
            first = level(server, workers, args.clients, args.duration, options)
            report(first)
            results.append(first)
            if args.knee:
                clients = args.clients
                while clients < args.knee_max and results[-1]["p99_ms"] <= 1000:
                    clients = int(clients * 1.5)
                    result = level(server, workers, clients, args.knee_duration, options)
                    report(result)
                    results.append(result)
                knee = next((r for r in results if r["p99_ms"] > 1000), None)
                if knee is None:
                    log(f"p99 stayed under 1 s up to {results[-1]['clients']} clients")
                else:
                    busiest = max(knee["cpu_percent"].items(), key=lambda kv: kv[1] or 0)
                    total = sum(v or 0 for v in knee["cpu_percent"].values())
                    log(
                        f"knee: p99 passed 1 s at {knee['clients']} clients ({knee['points_per_s']:,} points/s); "
                        f"CPU {total}% of {os.cpu_count() * 100}% in use, most by {busiest[0]} ({busiest[1]}%)"
                    )
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                try:
                    w.wait(30)
                except subprocess.TimeoutExpired:
                    w.kill()
    save_result("load", {"args": vars(args), "levels": results})
    print(json.dumps(results, indent=1))
    target = results[0]
    met = target["p99_ms"] < 500 and target["errors"] == 0 and target["lost"] == 0
    log(
        f"target at {target['clients']} clients (the issue's is 50): p99 < 500 ms, 0 errors, 0 lost: "
        f"{'met' if met else 'missed'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
