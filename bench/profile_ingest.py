"""Profile the ingest hot path in-process (no HTTP server): where does a batch's time go?

    .venv/bin/python bench/profile_ingest.py --db postgres [--batches 20] [--batch 10000]

Sets up a throwaway database like the benchmarks, then sends batches through
Django's test client (middleware, token auth, MessagePack parser, view,
``runs.ingest.apply_batch``, ``runs.series`` COPY) under cProfile, and prints:

* the wall time per batch split into stages timed separately (msgpack decode,
  ``parse_ops``, the whole request), and
* the top functions by cumulative and internal time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, REPO, RunstoreServer, log, median  # noqa: E402


def inner(args) -> None:
    """Runs inside a process whose env points at the benchmark database."""
    src = os.environ.get("BENCH_SRC", str(REPO))
    sys.path.insert(0, src)
    os.chdir(src)
    import django

    django.setup()
    import msgpack
    from django.db import connection
    from django.test import Client
    from ingest import append_op, make_points

    from runs.ingest import parse_ops

    token = os.environ["BENCH_TOKEN"]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    run = client.post("/api/v1/runs/", {"project": "bench/profile"}, content_type="application/json").json()["uuid"]
    n = args.batches * args.batch
    steps, timestamps, values = make_points(n + args.batch)
    bodies = []
    for seq, i in enumerate(range(0, n + args.batch, args.batch)):
        bodies.append(
            msgpack.packb(
                {
                    "stream": "p",
                    "seq": seq,
                    "ops": [
                        append_op(
                            "train/loss",
                            values[i : i + args.batch],
                            steps[i : i + args.batch],
                            timestamps[i : i + args.batch],
                            args.wire,
                        )
                    ],
                },
                use_bin_type=True,
            )
        )

    url = f"/api/v1/runs/{run}/batch"

    def post(body):
        r = client.post(url, body, content_type="application/msgpack", HTTP_ACCEPT="application/json")
        assert r.status_code == 200, r.content[:300]

    post(bodies[0])  # warm-up
    decode, parse, request = [], [], []
    for body in bodies[1:]:
        t = time.perf_counter()
        raw = msgpack.unpackb(body)
        decode.append(time.perf_counter() - t)
        t = time.perf_counter()
        parse_ops(raw["ops"])
        parse.append(time.perf_counter() - t)
    # the whole request, unprofiled, on the first half; profiled on the second half
    half = len(bodies) // 2
    for body in bodies[1:half]:
        t = time.perf_counter()
        post(body)
        request.append(time.perf_counter() - t)
    print(
        f"per batch of {args.batch:,} points, {args.wire} columns (medians): msgpack decode {median(decode) * 1e3:.1f} ms, "
        f"parse_ops {median(parse) * 1e3:.1f} ms, whole request in-process {median(request) * 1e3:.1f} ms "
        f"({args.batch / median(request):,.0f} points/s)"
    )

    # The COPY alone, without validation or the view: the same rows straight into the table,
    # through runs.series.insert_float_points and through psycopg's write_row loop, alternating.
    from django.db import transaction

    from runs import series as series_store
    from runs.models import Attribute

    attr = Attribute.objects.get(run__uuid=run, path="train/loss")
    lo = 10**12
    copy_t, per_row_t = [], []

    def write_rows(chunk):
        with connection.cursor() as cur:
            with cur.cursor.copy(
                "COPY runs_floatpoint (series_id, step, timestamp, value) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "int8", "float8", "float8"])
                for row in zip([attr.pk] * args.batch, *chunk[1:], strict=False):
                    copy.write_row(row)

    for _ in range(args.copy_repeats if connection.vendor == "postgresql" else 0):
        for how, times in ((series_store.insert_float_points, copy_t), (write_rows, per_row_t)):
            chunk = (attr.pk, list(range(lo, lo + args.batch)), timestamps[: args.batch], values[: args.batch])
            lo += args.batch
            t = time.perf_counter()
            with transaction.atomic():
                how([chunk]) if how is series_store.insert_float_points else how(chunk)
            times.append(time.perf_counter() - t)
            if connection.vendor != "postgresql":
                break
    if connection.vendor == "postgresql" and args.copy_repeats:
        print(
            f"COPY+COMMIT of {args.batch:,} rows (medians of {args.copy_repeats}, alternating): "
            f"runs.series.insert_float_points {median(copy_t) * 1e3:.1f} ms; "
            f"psycopg write_row loop {median(per_row_t) * 1e3:.1f} ms"
        )

    prof = cProfile.Profile()
    prof.enable()
    for body in bodies[half:]:
        post(body)
    prof.disable()
    for key in ("cumulative", "tottime"):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).strip_dirs().sort_stats(key).print_stats(args.top)
        text = s.getvalue()
        print(f"\n--- profile of {len(bodies) - half} batches, by {key} ---")
        print(text[text.find("ncalls") - 3 :] if "ncalls" in text else text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--copy-repeats", type=int, default=7, help="0: leave out the COPY comparison")
    p.add_argument("--wire", choices=["packed", "lists"], default="packed", help="float columns packed or as lists")
    p.add_argument("--pg-db", default=None, help="the PostgreSQL database to create and drop")
    p.add_argument("--source", default=None, help="git revision to export and run (default HEAD), or 'worktree'")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        return inner(args)
    extra = {"pg_db": args.pg_db} if args.pg_db else {}
    with RunstoreServer(args.db, source=args.source, celery=False, **extra) as server:
        env = {**server.env, "BENCH_TOKEN": server.token, "BENCH_SRC": str(server.src), "PYTHONPATH": str(server.src)}
        log(f"[{args.db}] server code: {server.source}")
        log(f"[{args.db}] profiling {args.batches} batches of {args.batch:,} points in-process")
        subprocess.run(
            [
                PYTHON,
                __file__,
                "--inner",
                "--db",
                args.db,
                "--batches",
                str(args.batches),
                "--batch",
                str(args.batch),
                "--top",
                str(args.top),
                "--copy-repeats",
                str(args.copy_repeats),
                "--wire",
                args.wire,
            ],
            cwd=server.src,
            env=env,
            check=True,
        )


if __name__ == "__main__":
    main()
