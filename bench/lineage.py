"""Lineage and artifact-version benchmark.

    .venv/bin/python bench/lineage.py --db postgres            # or sqlite
    .venv/bin/python bench/lineage.py --parts chain,consumers,hash --files 10000 --total-mb 2048

Three measurements, each the median of repeated runs in the server process:

1. ``chain``: a chain of 50 runs over 5 projects (run i consumes the version run i-1 produced),
   written through the batch engine (``track`` operations); the time of
   ``runs.artifacts.queries.chain`` from the last run back to the first (depth 50) for a
   non-superuser viewer of the five projects, alternated with the chain as it was before
   (``bench/lineage_before.py``), so both medians come from the same run under the same load.
   Target < 100 ms.
2. ``consumers``: 100,000 runs (20,000 on SQLite), each consuming one of 1,000 versions (so a
   version has ~100 consumers), rows bulk-inserted; the time of "runs that consumed version V"
   (``queries.version_links(user, hash, role="input")``, run rows with project and workspace)
   for a project member. Target < 50 ms.
3. ``hash``: a generated directory of ``--files`` files totalling ``--total-mb`` MB hashed by the
   client's ``track_files`` machinery (``runstore._internal.artifacts.hash_local``, thread pool):
   cold (no hash cache; each file's pages dropped from the OS cache with
   ``posix_fadvise(DONTNEED)`` first, so they are read from disk) in MB/s, and warm (every
   hash from the cache) in seconds. Target warm < 1 s.

PostgreSQL uses the database ``runstore_lbench`` (BENCH_PG_URL overrides; dropped and made
again each time); SQLite a file under bench/results/. Results: bench/results/lineage.json.
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "client" / "src"))
RESULTS = REPO / "bench" / "results"


def log(*args) -> None:
    print("[lineage]", *args, file=sys.stderr, flush=True)


def configure(db: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.environ["RUNSTORE_VAR_DIR"] = str(RESULTS / f"lineage-{db}-var")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if db == "postgres":
        url = os.environ.get("BENCH_PG_URL", "postgres://runstore:runstore@127.0.0.1:5432/runstore_lbench")
        import psycopg
        from common import drop_database  # bench/common.py, beside this script

        name = url.rsplit("/", 1)[1]
        admin = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            drop_database(conn, name)
            conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = url
    else:
        path = RESULTS / "lineage-bench.sqlite3"
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "tracker.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bench_chain(length: int, projects: int, repeat: int) -> dict:
    import lineage_before  # the chain before its permission look-up and row loading were cut (bench/)
    from django.contrib.auth.models import User

    from projects import services as project_services
    from projects.models import ProjectRole
    from runs import services
    from runs.artifacts import queries

    owner = User.objects.create_user("chain-owner")
    member = User.objects.create_user("chain-reader")
    workspace = project_services.create_workspace(owner, "chain")
    made = []
    for i in range(projects):
        project = project_services.create_project(owner, workspace, f"p{i}", key=f"CH{i}")
        project_services.set_project_role(project, member, ProjectRole.VIEWER)
        made.append(project)
    runs = []
    for i in range(length):
        run, _ = services.create_run(owner, made[i % projects], name=f"step {i}")
        ops = [{"op": "track", "path": "model", "role": "output", "hash": digest(f"v{i}"), "name": "chain"}]
        if i:
            ops.append({"op": "track", "path": "data", "role": "input", "hash": digest(f"v{i - 1}"), "name": "chain"})
        services.apply_batch(owner, run, stream="s", seq=0, raw_ops=ops)
        runs.append(run)
    last = runs[-1]
    result = queries.chain(member, last, depth=length)
    assert len(result.runs) == length, len(result.runs)
    old = lineage_before.chain(member, last, depth=length)
    assert queries.chain_json(old) == queries.chain_json(result)  # the same answer, before and after
    # before and after side by side: alternated, so both see the same load
    times = interleaved(
        {
            "before": lambda: lineage_before.chain(member, last, depth=length),
            "after": lambda: queries.chain(member, last, depth=length),
            "after_json": lambda: queries.chain_json(queries.chain(member, last, depth=length)),
        },
        repeat,
    )
    return {
        "runs": length,
        "projects": projects,
        "chain_ms_median": statistics.median(times["after"]),
        "chain_ms_min": min(times["after"]),
        "chain_json_ms_median": statistics.median(times["after_json"]),
        "before_chain_ms_median": statistics.median(times["before"]),
        "before_chain_ms_min": min(times["before"]),
        "after_over_before": statistics.median(times["after"]) / statistics.median(times["before"]),
        "target_ms": 100,
    }


def interleaved(fns: dict, repeat: int) -> dict[str, list[float]]:
    """Each of ``fns`` timed ``repeat`` times in turn (after one warm-up each), in ms."""
    for fn in fns.values():
        fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            out[name].append((time.perf_counter() - started) * 1000)
    return out


def bench_consumers(count: int, versions: int, repeat: int) -> dict:
    from django.contrib.auth.models import User
    from django.db import transaction
    from django.utils import timezone

    from projects import services as project_services
    from projects.models import ProjectRole
    from runs.artifacts import queries
    from runs.artifacts.models import ArtifactVersion, RunArtifact
    from runs.models import Run

    owner = User.objects.create_user("wide-owner")
    member = User.objects.create_user("wide-reader")
    workspace = project_services.create_workspace(owner, "wide")
    project = project_services.create_project(owner, workspace, "runs", key="WIDE")
    project_services.set_project_role(project, member, ProjectRole.VIEWER)
    other = project_services.create_project(owner, workspace, "hidden", key="HID")  # member cannot read it
    now = timezone.now()
    started = time.monotonic()
    with transaction.atomic():
        made = ArtifactVersion.objects.bulk_create(
            [ArtifactVersion(workspace=workspace, hash=digest(f"w{i}"), size=i, file_count=1) for i in range(versions)]
        )
    chunk = 5000
    for start in range(0, count, chunk):
        with transaction.atomic():
            rows = Run.objects.bulk_create(
                [
                    Run(project=other if n % 10 == 9 else project, number=n + 1, name=f"r{n}", created_at=now)
                    for n in range(start, min(count, start + chunk))
                ]
            )
            RunArtifact.objects.bulk_create(
                [
                    RunArtifact(
                        run=run,
                        project_id=run.project_id,
                        version=made[(start + i) % versions],
                        role="input",
                        path="data/train",
                        created_at=now,
                    )
                    for i, run in enumerate(rows)
                ]
            )
    log(f"{count} runs and links in {time.monotonic() - started:.1f} s")
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    target = made[versions // 2].hash
    found = queries.version_links(member, target, role="input")
    assert found and all(link.project_id == project.pk for link in found), len(found)
    times = timed(lambda: queries.version_links(member, target, role="input"), repeat)
    return {
        "runs": count,
        "versions": versions,
        "consumers_of_v": len(found),
        "consumers_ms_median": statistics.median(times),
        "consumers_ms_min": min(times),
        "target_ms": 50,
    }


def _drop_cache(paths) -> None:
    for path in paths:
        with open(path, "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def bench_hash(files: int, total_mb: int, where: Path) -> dict:
    from runstore._internal import artifacts

    root = where / "data"
    size = max(1, total_mb * 1024 * 1024 // files)
    started = time.monotonic()
    block = os.urandom(1 << 20)
    paths = []
    for i in range(files):
        path = root / f"d{i % 100:02d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            left = size
            seed = i.to_bytes(4, "little")
            f.write(seed)
            left -= 4
            while left > 0:
                f.write(block[: min(left, len(block))])
                left -= len(block)
            f.flush()
            os.fsync(f.fileno())
        paths.append(path)
    written = sum(p.stat().st_size for p in paths)
    log(f"wrote {files} files, {written / 2**20:.0f} MB in {time.monotonic() - started:.1f} s")
    cache = artifacts.HashCache(where / "home" / artifacts.CACHE_NAME)
    _drop_cache(paths)
    started = time.perf_counter()
    entries = artifacts.hash_local(root, cache, log)
    cold = time.perf_counter() - started
    assert len(entries) == files
    warm_times = []
    for _ in range(3):
        started = time.perf_counter()
        again = artifacts.hash_local(root, cache, log)
        warm_times.append(time.perf_counter() - started)
    assert again == entries
    # the same, no cache: hashing alone with the files in the page cache (the CPU bound)
    started = time.perf_counter()
    artifacts.hash_local(root, None, log)
    hot = time.perf_counter() - started
    return {
        "files": files,
        "bytes": written,
        "workers": artifacts.workers(),
        "cold_s": cold,
        "cold_mb_s": written / 2**20 / cold,
        "warm_s_median": statistics.median(warm_times),
        "uncached_page_cache_mb_s": written / 2**20 / hot,
        "target_warm_s": 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--parts", default="chain,consumers,hash")
    parser.add_argument("--runs", type=int, default=None, help="runs for 'consumers' (100,000; 20,000 on SQLite)")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--total-mb", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--dir", default=None, help="where to generate the files (default: a temporary directory)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    out: dict = {"db": args.db, "load_before": os.getloadavg()}
    if parts & {"chain", "consumers"}:
        configure(args.db)
    if "chain" in parts:
        out["chain"] = bench_chain(50, 5, args.repeat)
        log("chain", out["chain"])
    if "consumers" in parts:
        count = args.runs or (100_000 if args.db == "postgres" else 20_000)
        out["consumers"] = bench_consumers(count, 1000, args.repeat)
        log("consumers", out["consumers"])
    if "hash" in parts:
        where = Path(tempfile.mkdtemp(prefix="runstore-hash-bench-", dir=args.dir))
        try:
            out["hash"] = bench_hash(args.files, args.total_mb, where)
        finally:
            shutil.rmtree(where, ignore_errors=True)
        log("hash", out["hash"])
    out["load_after"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lineage.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
