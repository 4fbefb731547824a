"""Ingest benchmark: N float points for one run over HTTP, in batches, into PostgreSQL and/or SQLite.

    .venv/bin/python bench/ingest.py --db both [--points 1000000] [--batch 10000]
        [--workers 2 --threads 2] [--senders 1] [--with-read] [--wire packed|lists|both --rounds 3]

Each batch is one ``append`` op of ``--batch`` floats with explicit steps and
timestamps, MessagePack-encoded (encoding is inside the timed loop), the columns
packed as ``bin`` (``--wire packed``, what the client sends) or as per-point lists
(``--wire lists``, the older form); ``--wire both --rounds N`` alternates the two on
the same server, each round into a run of its own. Reports:

* points/s: points / wall time from the first request to the last response;
* the median (and p95) per-batch latency;
* bytes on disk per point: the float-point table with its indexes
  (PostgreSQL: ``hypertable_size`` or ``pg_total_relation_size``; SQLite:
  ``dbstat`` over the table and its indexes) / its row count.

With ``--senders 2`` a second phase sends the same number of points again,
split over 2 concurrent clients each writing its own run (aggregate points/s).
With ``--with-read`` the read benchmark (``bench/read.py``) runs on the
1,000,000-point run while the same server is up.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid

import msgpack

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import PG_BENCH_DB, RunstoreServer, log, median, resolve_source, save_result  # noqa: E402


def make_points(n: int, seed: int = 1):
    rng = random.Random(seed)
    t0 = 1_700_000_000.0
    values = [rng.gauss(1.0, 0.25) for _ in range(n)]
    steps = list(range(n))
    timestamps = [t0 + i * 0.01 for i in range(n)]
    return steps, timestamps, values


def append_op(path, values, steps, timestamps, wire="lists") -> dict:
    """One ``append`` op: columns as lists (per-point form) or, ``wire="packed"``, as MessagePack
    ``bin`` of little-endian float64 / int64 items (packed inside the timed loop, as a client would)."""
    if wire == "packed":
        import numpy as np

        return {
            "op": "append",
            "path": path,
            "values": np.asarray(values, "<f8").tobytes(),
            "steps": np.asarray(steps, "<i8").tobytes(),
            "timestamps": np.asarray(timestamps, "<f8").tobytes(),
        }
    return {"op": "append", "path": path, "values": values, "steps": steps, "timestamps": timestamps}


def send_series(
    server: RunstoreServer,
    run_uuid: str,
    steps,
    timestamps,
    values,
    batch: int,
    path="train/loss",
    after_batch=None,
    wire="lists",
):
    """Send all points sequentially; return (wall seconds, per-batch latencies).

    ``after_batch(last_step)`` is called after each acknowledged batch (outside the latency timing)."""
    session = server.session()
    url = f"{server.url}/api/v1/runs/{run_uuid}/batch"
    headers = {"Content-Type": "application/msgpack", "Accept": "application/json"}
    stream = uuid.uuid4().hex
    latencies = []
    start = time.perf_counter()
    for seq, i in enumerate(range(0, len(values), batch)):
        body = msgpack.packb(
            {
                "stream": stream,
                "seq": seq,
                "ops": [append_op(path, values[i : i + batch], steps[i : i + batch], timestamps[i : i + batch], wire)],
            },
            use_bin_type=True,
        )
        t = time.perf_counter()
        r = session.post(url, data=body, headers=headers)
        latencies.append(time.perf_counter() - t)
        if r.status_code != 200 or not r.json().get("applied"):
            raise RuntimeError(f"batch {seq}: {r.status_code} {r.text[:300]}")
        if after_batch is not None:
            after_batch(steps[min(i + batch, len(values)) - 1])
    wall = time.perf_counter() - start
    session.close()
    return wall, latencies


class RollupLag:
    """Samples, after each acknowledged batch, how many final points of the run's series
    the roll-up worker has not rolled up yet (``runs_rollupcursor.rolled_until``)."""

    def __init__(self, server: RunstoreServer, run_uuid: str):
        self.server, self.run_uuid, self.samples, self.series_id = server, run_uuid, [], None
        if server.db == "postgres":
            from common import pg_connect

            self.conn = pg_connect(server.pg_db)
            self.mark = "%s"
        else:
            import sqlite3

            self.conn = sqlite3.connect(server.sqlite_path, isolation_level=None)
            self.mark = "?"

    def rolled_until(self) -> int:
        if self.series_id is None:
            row = self.conn.execute(
                "SELECT a.id FROM runs_attribute a JOIN runs_run r ON r.id = a.run_id "
                f"WHERE r.uuid = {self.mark} AND a.path = 'train/loss'",
                [self.run_uuid if self.server.db == "postgres" else self.run_uuid.replace("-", "")],
            ).fetchone()
            self.series_id = row[0]
        row = self.conn.execute(
            f"SELECT rolled_until FROM runs_rollupcursor WHERE series_id = {self.mark}", [self.series_id]
        ).fetchone()
        return row[0] if row else 0

    def __call__(self, last_step: int) -> None:
        final = (last_step + 1) // 16 * 16  # runs.rollups.closed_until
        self.samples.append(max(0, final - self.rolled_until()))

    def wait_caught_up(self, last_step: int, since: float, timeout: float = 300.0) -> float:
        final = (last_step + 1) // 16 * 16
        while self.rolled_until() < final and time.perf_counter() - since < timeout:
            time.sleep(0.05)
        self.conn.close()
        return time.perf_counter() - since

    def summary(self, caught_up: float) -> dict:
        return {
            "median_points": median(self.samples),
            "max_points": max(self.samples),
            "caught_up_after_s": caught_up,
            "samples": len(self.samples),
        }


def bench_db(
    db: str,
    points: int,
    batch: int,
    workers: int,
    threads: int,
    senders: int,
    with_read: bool,
    read_repeats: int,
    source: str | None = None,
    celery: bool | None = None,
    wires: list[str] | None = None,
    rounds: int = 1,
    pg_db: str = PG_BENCH_DB,
    client_rounds: int = 0,
) -> dict:
    wires = wires or ["packed"]
    steps, timestamps, values = make_points(points)
    with RunstoreServer(db, workers=workers, threads=threads, source=source, celery=celery, pg_db=pg_db) as server:
        log(f"[{db}] server code: {server.source}; celery worker: {'yes' if server.celery else 'no'}")
        session = server.session()
        # warm-up: one small batch on a throwaway run (imports, connection, first-request costs)
        warm = server.create_run(session, "bench/warmup")
        send_series(server, warm, steps[:1000], timestamps[:1000], values[:1000], 1000)

        # Each wire format sends the same points to a run of its own, ``rounds`` times, alternating
        # (lists, packed, packed, lists, ...); between phases the background work drains, so one
        # phase's roll-ups do not load the next. ``sequential`` reports the last format's median round.
        phases: dict[str, list] = {w: [] for w in wires}
        order = [w for r in range(rounds) for w in (wires if r % 2 == 0 else wires[::-1])]
        for wire in order:
            run_uuid = server.create_run(session)
            log(f"[{db}] sending {points:,} points in batches of {batch:,} (sequential client, {wire} columns)")
            lag = RollupLag(server, run_uuid) if server.celery else None
            wall, lat = send_series(server, run_uuid, steps, timestamps, values, batch, after_batch=lag, wire=wire)
            end = time.perf_counter()
            waited = server.wait_tasks()
            caught_up = lag.wait_caught_up(steps[-1], end) if lag else None
            phases[wire].append(
                {
                    "wire": wire,
                    "wall_s": wall,
                    "points_per_s": points / wall,
                    "batch_latency_median_ms": median(lat) * 1000,
                    # less sensitive to other load on the machine than the wall-clock rate
                    "points_per_s_at_median_batch": batch / median(lat),
                    "batch_latency_p95_ms": sorted(lat)[int(0.95 * (len(lat) - 1))] * 1000,
                    "batches": len(lat),
                    "background_tasks_drained_after_s": waited,
                    "rollup_lag": lag.summary(caught_up) if lag else None,
                    "run_uuid": run_uuid,
                }
            )
            log(f"[{db}] {wire}: {points / wall:,.0f} points/s, median batch {median(lat) * 1000:.1f} ms")
        storage = server.float_storage()
        seq_points = points
        storage_bytes_per_point = storage["bytes"] / storage["points"]
        by_wire = {}
        for wire, rows in phases.items():
            rates = sorted(row["points_per_s"] for row in rows)
            by_wire[wire] = {"rounds": rows, "points_per_s": rates, "median_points_per_s": median(rates)}
        main_rows = sorted(phases[wires[-1]], key=lambda row: row["points_per_s"])
        primary = main_rows[len(main_rows) // 2]
        run_uuid = primary["run_uuid"]
        lag_summary = primary["rollup_lag"]
        result = {
            "db": db,
            "timescaledb": storage["hypertable"],
            "server": f"gunicorn -w {workers} --threads {threads}" + (" + celery worker -c 1" if server.celery else ""),
            "source": server.source,
            "points": points,
            "batch": batch,
            "sequential": primary,
            "wires": by_wire,
            "storage": {**storage, "bytes_per_point": storage_bytes_per_point, "points_in_run": seq_points},
            "background_tasks_drained_after_s": primary["background_tasks_drained_after_s"],
            "rollup_lag": lag_summary,
            "run_uuid": run_uuid,
        }
        for wire, row in by_wire.items():
            log(
                f"[{db}] {wire} columns: median {row['median_points_per_s']:,.0f} points/s over {len(row['rounds'])} "
                f"round(s) ({', '.join(f'{r:,.0f}' for r in row['points_per_s'])})"
            )
        log(f"[{db}] {storage_bytes_per_point:.1f} B/point ({storage['how']})")
        lag = lag_summary
        if lag:
            r = lag
            log(
                f"[{db}] roll-up lag behind the acknowledged points: median {r['median_points']:,.0f}, "
                f"max {r['max_points']:,} points; rolled up {r['caught_up_after_s']:.1f} s after the last batch"
            )

        if with_read:
            from read import bench_read

            result["read"] = bench_read(server, run_uuid, repeats=read_repeats)

        if senders > 1:
            share = points // senders
            runs = [server.create_run(session) for _ in range(senders)]
            out: list = [None] * senders

            def worker(k):
                lo = k * share
                out[k] = send_series(
                    server,
                    runs[k],
                    steps[:share],
                    timestamps[lo : lo + share],
                    values[lo : lo + share],
                    batch,
                    wire=wires[-1],
                )

            log(f"[{db}] sending {share * senders:,} points from {senders} concurrent clients, one run each")
            threads_ = [threading.Thread(target=worker, args=(k,)) for k in range(senders)]
            start = time.perf_counter()
            for t in threads_:
                t.start()
            for t in threads_:
                t.join()
            wall_c = time.perf_counter() - start
            all_lat = [x for _, lats in out for x in lats]
            result["concurrent"] = {
                "senders": senders,
                "points": share * senders,
                "wall_s": wall_c,
                "points_per_s": share * senders / wall_c,
                "batch_latency_median_ms": median(all_lat) * 1000,
            }
            log(
                f"[{db}] {senders} senders: {share * senders / wall_c:,.0f} points/s aggregate, "
                f"median batch {median(all_lat) * 1000:.1f} ms"
            )
        if client_rounds:
            result["client_e2e"] = client_e2e(server, points, wires, client_rounds)
        session.close()
    return result


def client_e2e(server: RunstoreServer, points: int, wires: list[str], rounds: int) -> dict:
    """``client/bench_append.py --e2e`` against this server (the client of this checkout): ``points``
    appends from one training loop until all are acknowledged, ``rounds`` per wire format, alternating."""
    import re
    import subprocess

    from common import PYTHON, REPO

    wire = "both" if len(wires) > 1 else wires[0]
    log(f"[{server.db}] client end to end: {points:,} appends until acknowledged, {rounds} round(s), {wire}")
    out = subprocess.run(
        [
            PYTHON,
            str(REPO / "client" / "bench_append.py"),
            "--e2e",
            server.url,
            server.token,
            "bench/e2e",
            "--calls",
            str(points),
            "--wire",
            wire,
            "--rounds",
            str(rounds),
        ],
        check=True,
        text=True,
        stdout=subprocess.PIPE,
        # the client of this checkout (the venv's editable install may point at another tree)
        env={
            **{k: v for k, v in __import__("os").environ.items() if not k.startswith("RUNSTORE_")},
            "PYTHONPATH": str(REPO / "client" / "src"),
        },
    ).stdout
    result: dict = {"output": out.splitlines()}
    for line in out.splitlines():
        log(f"[{server.db}] {line}")
        found = re.match(r"e2e median \((\w+) columns.*?\): ([\d,]+) points/s", line)
        if found:
            result[found.group(1)] = int(found.group(2).replace(",", ""))
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["postgres", "sqlite", "both"], default="both")
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--senders", type=int, default=1, help="also run a phase with this many concurrent clients")
    p.add_argument("--with-read", action="store_true", help="run the read benchmark on the ingested run")
    p.add_argument("--read-repeats", type=int, default=20)
    p.add_argument(
        "--source", default=None, help="git revision to export and run (default HEAD, or $BENCH_SOURCE), or 'worktree'"
    )
    p.add_argument(
        "--no-celery",
        dest="celery",
        action="store_const",
        const=False,
        default=None,
        help="no Celery worker even when the code has background tasks",
    )
    p.add_argument(
        "--wire",
        choices=["packed", "lists", "both"],
        default="packed",
        help="float columns as packed MessagePack bin (default) or per-point lists; both: side by side",
    )
    p.add_argument("--rounds", type=int, default=1, help="sequential phases per wire format (alternating)")
    p.add_argument(
        "--client-e2e",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="then ROUNDS runs per wire format of client/bench_append.py --e2e against the same server",
    )
    p.add_argument("--pg-db", default=PG_BENCH_DB, help="the PostgreSQL database to create and drop")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    args = p.parse_args(argv)
    dbs = ["postgres", "sqlite"] if args.db == "both" else [args.db]
    args.source = resolve_source(args.source)  # one revision for every database
    results = {
        db: bench_db(
            db,
            args.points,
            args.batch,
            args.workers,
            args.threads,
            args.senders,
            args.with_read,
            args.read_repeats,
            args.source,
            args.celery,
            ["lists", "packed"] if args.wire == "both" else [args.wire],
            args.rounds,
            args.pg_db,
            args.client_e2e,
        )
        for db in dbs
    }
    save_result(f"ingest-w{args.workers}t{args.threads}", results)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        for db, r in results.items():
            s = r["sequential"]
            print(
                f"{db:9s} {s['points_per_s']:>10,.0f} points/s  median batch {s['batch_latency_median_ms']:7.1f} ms  "
                f"{r['storage']['bytes_per_point']:6.1f} B/point  ({r['server']})"
            )
            for wire, w in r["wires"].items():
                print(f"{'':9s} {w['median_points_per_s']:>10,.0f} points/s median, {wire} columns")
            if "concurrent" in r:
                c = r["concurrent"]
                print(f"{'':9s} {c['points_per_s']:>10,.0f} points/s with {c['senders']} concurrent senders")
    return results


if __name__ == "__main__":
    main()
