"""Read benchmark: a 1,000,000-point float series downsampled to 1,000 buckets, and a 1% zoom window.

    .venv/bin/python bench/read.py --db both [--points 1000000] [--repeats 20]

Ingests the series (as ``bench/ingest.py`` does, not reported here), waits for
its roll-ups, runs ``VACUUM ANALYZE`` on the point table (PostgreSQL), then:

* HTTP: median round trip of ``GET /api/v1/runs/<uuid>/series?path=train/loss&buckets=1000``
  over ``--repeats`` requests (after 2 warm-up requests), full range and a
  1% window (``from_step``/``to_step`` around the middle);
* SQL: ``runs.series.downsample`` timed alone in a Django process on the same
  database (median of ``--repeats``), plus ``EXPLAIN (ANALYZE, BUFFERS)`` of
  the exact query it sends (captured with ``connection.execute_wrapper``),
  saved under ``bench/results/``;
* on PostgreSQL, two candidate rewrites of that query on the same data, to
  measure what a server change would gain (see ``bench/read_sql.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RunstoreServer, log, median, resolve_source, save_result  # noqa: E402


def http_series(server: RunstoreServer, run_uuid: str, repeats: int, **params) -> dict:
    session = server.session()
    url = f"{server.url}/api/v1/runs/{run_uuid}/series"
    query = {"path": "train/loss", "buckets": 1000, **params}
    times = []
    body = None
    for i in range(repeats + 2):
        t = time.perf_counter()
        r = session.get(url, params=query, headers={"Accept": "application/json"})
        elapsed = time.perf_counter() - t
        r.raise_for_status()
        if i >= 2:
            times.append(elapsed)
        body = r.json()
    session.close()
    return {
        "median_ms": median(times) * 1000,
        "min_ms": min(times) * 1000,
        "buckets": len(body["steps"]),
        "bucket_width": body["bucket_width"],
        "response_bytes": len(r.content),
    }


def bench_read(server: RunstoreServer, run_uuid: str, repeats: int = 20, points: int | None = None) -> dict:
    waited = server.wait_tasks()  # e.g. roll-ups of the series, when the code has them
    if server.db == "postgres":
        # Table statistics, as autovacuum would have them after a 1M-row ingest: the planner's
        # choices on the raw-point queries depend on them (a fresh table happens to plan well).
        from common import PG_BENCH_DB, pg_connect

        with pg_connect(PG_BENCH_DB) as conn:
            conn.execute("VACUUM ANALYZE runs_floatpoint")
    session = server.session()
    attrs = session.get(
        f"{server.url}/api/v1/runs/{run_uuid}/attributes", headers={"Accept": "application/json"}
    ).json()
    session.close()
    summary = next(f["value"] for f in attrs["fields"] if f["path"] == "train/loss")
    first, last = summary["first_step"], summary["last_step"]
    n = last - first + 1
    zoom_lo = first + n // 2
    zoom = {"from_step": zoom_lo, "to_step": zoom_lo + n // 100 - 1}
    out = {
        "series_points": summary["count"],
        "zoom": zoom,
        "source": server.source,
        "background_tasks_drained_after_s": waited,
    }
    out["http_full"] = http_series(server, run_uuid, repeats)
    out["http_zoom"] = http_series(server, run_uuid, repeats, **zoom)
    sql = json.loads(server.python("read_sql.py", run_uuid, str(repeats), str(zoom["from_step"]), str(zoom["to_step"])))
    out["sql"] = sql
    log(
        f"[{server.db}] downsample 1,000 buckets of {summary['count']:,} points: HTTP {out['http_full']['median_ms']:.1f} ms, "
        f"SQL {sql['full']['median_ms']:.1f} ms; 1% zoom: HTTP {out['http_zoom']['median_ms']:.1f} ms, "
        f"SQL {sql['zoom']['median_ms']:.1f} ms"
    )
    for name, c in sql.get("candidates", {}).items():
        log(
            f"[{server.db}]   candidate {name}: full {c['full_ms']:.1f} ms, zoom {c['zoom_ms']:.1f} ms, same result: {c['same']}"
        )
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["postgres", "sqlite", "both"], default="both")
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument(
        "--source", default=None, help="git revision to export and run (default HEAD, or $BENCH_SOURCE), or 'worktree'"
    )
    p.add_argument("--no-celery", dest="celery", action="store_const", const=False, default=None)
    args = p.parse_args(argv)
    from ingest import make_points, send_series

    results = {}
    args.source = resolve_source(args.source)
    steps, timestamps, values = make_points(args.points)
    for db in ["postgres", "sqlite"] if args.db == "both" else [args.db]:
        with RunstoreServer(db, source=args.source, celery=args.celery) as server:
            log(f"[{db}] server code: {server.source}; celery worker: {'yes' if server.celery else 'no'}")
            session = server.session()
            run_uuid = server.create_run(session)
            session.close()
            log(f"[{db}] ingesting {args.points:,} points")
            send_series(server, run_uuid, steps, timestamps, values, args.batch)
            results[db] = bench_read(server, run_uuid, args.repeats)
    save_result("read", results)
    for db, r in results.items():
        print(
            f"{db:9s} full: HTTP {r['http_full']['median_ms']:7.1f} ms  SQL {r['sql']['full']['median_ms']:7.1f} ms   "
            f"1% zoom: HTTP {r['http_zoom']['median_ms']:7.1f} ms  SQL {r['sql']['zoom']['median_ms']:7.1f} ms"
        )
    return results


if __name__ == "__main__":
    main()
