"""Query engine benchmark: 100,000 runs on PostgreSQL (20,000 on SQLite), ~50 fields each.

    .venv/bin/python bench/query.py --db postgres   # or sqlite, or both
    .venv/bin/python bench/query.py --db both --fresh

Fills a project (once; reused on later runs unless --fresh) with runs holding
mixed-type fields (dataset name/version strings, accuracy floats, an owner
among 20 users, tags) and 5 float series of 100 points each, then times, in
the server process, with the median of repeated runs:

1. the sentence "runs trained on version X of data set Y with accuracy above
   0.93, grouped by who created them, sorted by creation time": the groups with
   counts and avg accuracy, plus the first page of 50 runs and the total count;
2. a filter on a series aggregate (train/loss:last < 0.2) sorted by another
   field (eval/acc), first page of 50 plus count;
3. suggestions for a partly typed path, and for values of a string field.

PostgreSQL uses the database ``runstore_qbench`` on the test server
(BENCH_PG_URL overrides); SQLite a file under bench/results/.
"""

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"

SIZES = {"postgres": 100_000, "sqlite": 20_000}
SERIES = ["train/loss", "train/acc", "val/loss", "val/acc", "lr"]
POINTS = 100


def configure(db: str, fresh: bool) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.environ["RUNSTORE_VAR_DIR"] = str(RESULTS / f"query-{db}-var")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if db == "postgres":
        url = os.environ.get("BENCH_PG_URL", "postgres://runstore:runstore@127.0.0.1:5432/runstore_qbench")
        import psycopg

        name = url.rsplit("/", 1)[1]
        admin = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if fresh and exists:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                exists = None
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = url
    else:
        path = RESULTS / "query-bench.sqlite3"
        if fresh:
            for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                stale.unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "tracker.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fields_for(rng: random.Random, index: int):
    """~45 scalar fields of one run: (path, type, value)."""
    datasets = ["Y", "imagenet", "cifar", "coco", "voc"]
    out = [
        ("parameters/lr", "float", 10 ** rng.uniform(-5, -1)),
        ("parameters/batch_size", "int", rng.choice([16, 32, 64, 128, 256])),
        ("parameters/optimizer/name", "string", rng.choice(["adam", "sgd", "adamw", "lamb"])),
        ("parameters/epochs", "int", rng.randint(1, 100)),
        ("parameters/seed", "int", index),
        ("parameters/dropout", "float", rng.random() / 2),
        ("parameters/weight_decay", "float", rng.random() / 100),
        ("parameters/momentum", "float", rng.random()),
        ("parameters/warmup", "int", rng.randint(0, 1000)),
        ("parameters/layers", "int", rng.randint(2, 200)),
        ("data/train/name", "string", rng.choice(datasets)),
        ("data/train/version", "string", rng.choice(["X", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"])),
        ("data/val/name", "string", rng.choice(datasets)),
        ("data/val/version", "string", f"v{rng.randint(1, 9)}"),
        ("eval/acc", "float", rng.random()),
        ("eval/f1", "float", rng.random()),
        ("eval/precision", "float", rng.random()),
        ("eval/recall", "float", rng.random()),
        ("eval/loss", "float", rng.random() * 3),
        ("sys/hostname", "string", f"node-{rng.randint(0, 63)}"),
        ("notes", "string", rng.choice(["baseline", "ablation", "sweep", "debug run", "final"]) + f" #{index}"),
        ("model/arch", "string", rng.choice(["resnet50", "vit-b", "convnext", "bert-base", "gpt2"])),
        ("model/params", "int", rng.randint(10**6, 10**9)),
        ("env/python", "string", rng.choice(["3.10.14", "3.11.9", "3.12.4"])),
        ("env/torch", "string", rng.choice(["2.3.1", "2.4.0", "2.5.1"])),
        ("env/cuda", "string", rng.choice(["12.1", "12.4"])),
        ("env/gpu", "string", rng.choice(["A100", "H100", "L4", "T4"])),
    ]
    out += [(f"metrics/extra_{k}", "float", rng.random()) for k in range(18)]
    return out


def generate(db: str, count: int) -> None:
    from django.contrib.auth.models import User
    from django.db import connection, transaction
    from django.utils import timezone

    from projects import services as project_services
    from projects.models import Project, ProjectRole, Workspace
    from runs.models import Run

    owner = User.objects.filter(username="bench").first() or User.objects.create_user("bench")
    workspace = Workspace.objects.filter(slug="bench").first() or project_services.create_workspace(owner, "bench")
    project = Project.objects.filter(workspace=workspace, slug="query").first() or project_services.create_project(
        owner, workspace, "query", key="QRY"
    )
    have = Run.objects.filter(project=project).count()
    if have == count:
        print(f"[{db}] reusing {count} runs", file=sys.stderr)
        return owner, project
    if have:
        raise SystemExit(f"[{db}] project has {have} runs, expected {count}: run with --fresh")
    users = []
    for i in range(20):
        user = User.objects.filter(username=f"user{i:02d}").first() or User.objects.create_user(f"user{i:02d}")
        project_services.set_project_role(project, user, ProjectRole.CONTRIBUTOR)
        users.append(user)
    rng = random.Random(7)
    started = time.monotonic()
    now = timezone.now()
    chunk = 2000
    attr_columns = (
        "run_id",
        "project_id",
        "path",
        "type",
        "int_value",
        "float_value",
        "string_value",
        "json_value",
        "count",
        "first_step",
        "last_step",
        "min_value",
        "max_value",
        "sum_value",
        "finite_count",
        "updated_at",
    )
    for start in range(0, count, chunk):
        with transaction.atomic():
            runs = [
                Run(
                    project=project,
                    number=i + 1,
                    name=f"run-{i}",
                    owner=users[rng.randrange(20)],
                    state=rng.choice(["finished"] * 8 + ["failed", "running"]),
                    created_at=now - timezone.timedelta(minutes=5 * (count - i)),
                    modified_at=now,
                    ping_at=now,
                )
                for i in range(start, min(count, start + chunk))
            ]
            Run.objects.bulk_create(runs)
            rows = []
            for run in runs:
                for path, type_, value in fields_for(rng, run.number):
                    rows.append(
                        (
                            run.pk,
                            project.pk,
                            path,
                            type_,
                            value if type_ == "int" else None,
                            value if type_ == "float" else None,
                            value if type_ == "string" else None,
                            None,
                            0,
                            None,
                            None,
                            None,
                            None,
                            None,
                            0,
                            now,
                        )
                    )
                tags = rng.sample(["best", "baseline", "sweep", "ablation", "final", "debug"], k=rng.randint(0, 2))
                rows.append(
                    (
                        run.pk,
                        project.pk,
                        "sys/tags",
                        "string_set",
                        None,
                        None,
                        None,
                        _json(tags),
                        0,
                        None,
                        None,
                        None,
                        None,
                        None,
                        0,
                        now,
                    )
                )
                for series in SERIES:
                    start_value, decay = 0.5 + rng.random() * 2, rng.uniform(0.95, 1.0)
                    values = [start_value * (decay**s) + rng.random() * 0.01 for s in range(POINTS)]
                    rows.append(
                        (
                            run.pk,
                            project.pk,
                            series,
                            "float_series",
                            None,
                            values[-1],
                            None,
                            None,
                            POINTS,
                            0,
                            POINTS - 1,
                            min(values),
                            max(values),
                            sum(values),
                            POINTS,
                            now,
                        )
                    )
            _insert(connection, "runs_attribute", attr_columns, rows)
        print(f"[{db}] {min(count, start + chunk)}/{count} runs ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    Project.objects.filter(pk=project.pk).update(run_counter=count)
    from runs.ingest import record_fields
    from runs.models import Attribute

    record_fields(project.pk, Attribute.objects.filter(run__project=project, run__number=1).values_list("path", "type"))
    _points(connection, project.pk)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    print(f"[{db}] generated {count} runs in {time.monotonic() - started:.0f} s", file=sys.stderr)


def _json(value):
    import json

    return json.dumps(value)


def _insert(connection, table, columns, rows):
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            types = {"json_value": "jsonb"}
            with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            del types
        else:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def _points(connection, project_id):
    """100 points per float series, generated inside the database."""
    started = time.monotonic()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "INSERT INTO runs_floatpoint (series_id, step, timestamp, value) "
                "SELECT a.id, s, 1.7e9 + s, a.max_value + (a.float_value - a.max_value) * s / %s "
                "FROM runs_attribute a CROSS JOIN generate_series(0, %s) s "
                "WHERE a.project_id = %s AND a.type = 'float_series'",
                [POINTS - 1, POINTS - 1, project_id],
            )
        else:
            cursor.execute(
                "WITH RECURSIVE s(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM s WHERE x < %s) "
                "INSERT INTO runs_floatpoint (series_id, step, timestamp, value) "
                "SELECT a.id, s.x, 1.7e9 + s.x, a.max_value FROM runs_attribute a, s "
                "WHERE a.project_id = %s AND a.type = 'float_series'",
                [POINTS - 1, project_id],
            )
    print(f"points generated in {time.monotonic() - started:.0f} s", file=sys.stderr)


def timed(fn, repeat: int) -> tuple[float, object]:
    fn()  # warm-up
    samples, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), result


def measure(db: str, repeat: int) -> dict:
    from django.contrib.auth.models import User

    from projects.models import Project
    from runs.query import RunQuery, suggest

    user = User.objects.get(username="bench")
    project = Project.objects.get(workspace__slug="bench", slug="query")
    sentence = 'data/train/name = "Y" and data/train/version = "X" and eval/acc > 0.93'

    def the_sentence():
        q = RunQuery(
            user,
            project,
            query=sentence,
            sort=["-sys/creation_time"],
            group_by=["sys/owner"],
            aggregates=["eval/acc"],
            columns=["sys/id", "sys/owner", "eval/acc", "data/train/version"],
        )
        return q.groups(), q.page(50), q.count()

    def series_filter():
        q = RunQuery(
            user,
            project,
            query="train/loss:last < 0.2",
            sort=["-eval/acc"],
            columns=["sys/id", "eval/acc", "train/loss:last"],
        )
        return q.page(50), q.count()

    results = {}
    ms, (groups, page, count) = timed(the_sentence, repeat)
    results["sentence"] = (ms, f"{len(groups)} groups, {count} runs, first page {len(page)}")
    ms, (page, count) = timed(series_filter, repeat)
    results["series_filter"] = (ms, f"{count} runs, first page {len(page)}")
    ms, got = timed(lambda: suggest(project, "data/tr"), repeat)
    results["suggest_path"] = (ms, f"{len(got['items'])} items")
    ms, got = timed(lambda: suggest(project, 'parameters/optimizer/name = "'), repeat)
    results["suggest_values"] = (ms, f"{len(got['items'])} items")
    return results


def measure_http(db: str, repeat: int) -> dict:
    """The same two queries through the REST API of a gunicorn server on this database."""
    import socket
    import subprocess

    import requests
    from django.contrib.auth.models import User

    from accounts.models import ApiToken

    _, token = ApiToken.issue(User.objects.get(username="bench"), name="bench")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "gunicorn"), "tracker.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "2"],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                session.get(f"{base}/healthz", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.5)
        cases = {
            "sentence": {
                "query": 'data/train/name = "Y" and data/train/version = "X" and eval/acc > 0.93',
                "sort": "-sys/creation_time",
                "columns": "sys/id,sys/owner,eval/acc",
            },
            "series_filter": {
                "query": "train/loss:last < 0.2",
                "sort": "-eval/acc",
                "columns": "sys/id,eval/acc,train/loss:last",
            },
        }
        out = {}
        for name, params in cases.items():
            params = {"project": "bench/query", "limit": 50, **params}

            def call(params=params):
                response = session.get(f"{base}/api/v1/runs/", params=params, timeout=60)
                response.raise_for_status()
                return response.json()

            out[name] = timed(call, repeat)
        return out
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure_mlflow(db: str, count: int, repeat: int) -> dict | None:
    python = REPO / "bench" / ".venv-mlflow" / "bin" / "python"
    if not python.exists():
        print("MLflow comparison skipped: bench/.venv-mlflow is missing (bench/run_all.sh creates it)", file=sys.stderr)
        return None
    import json
    import subprocess

    if db == "postgres":
        import psycopg

        url = os.environ.get("BENCH_PG_URL", "postgres://runstore:runstore@127.0.0.1:5432/runstore_qbench")
        admin = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'mlflow_qbench'").fetchone():
                conn.execute('CREATE DATABASE "mlflow_qbench"')
        store = url.replace("postgres://", "postgresql+psycopg2://").rsplit("/", 1)[0] + "/mlflow_qbench"
    else:
        store = f"sqlite:///{RESULTS / 'mlflow-query.db'}"
    done = subprocess.run(
        [
            str(python),
            str(REPO / "bench" / "mlflow_query.py"),
            "--store",
            store,
            "--runs",
            str(count),
            "--repeat",
            str(repeat),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["postgres", "sqlite", "both"], default="both")
    parser.add_argument("--fresh", action="store_true", help="recreate the data")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--runs", type=int, help="override the number of runs")
    parser.add_argument("--no-compare", action="store_true", help="skip the HTTP and MLflow comparison")
    args = parser.parse_args()
    if args.db == "both":
        # Django is configured once per process: run each database in its own process.
        import subprocess

        for db in ("postgres", "sqlite"):
            extra = ["--fresh"] if args.fresh else []
            extra += ["--runs", str(args.runs)] if args.runs else []
            extra += ["--no-compare"] if args.no_compare else []
            subprocess.run([sys.executable, __file__, "--db", db, "--repeat", str(args.repeat), *extra], check=True)
        return
    configure(args.db, args.fresh)
    count = args.runs or SIZES[args.db]
    generate(args.db, count)
    results = measure(args.db, args.repeat)
    targets = {
        "sentence": 150 if args.db == "postgres" else 300,
        "series_filter": 300,
        "suggest_path": 50,
        "suggest_values": 50,
    }
    print(f"\nquery engine, {args.db}, {count} runs x ~50 fields, median of {args.repeat} (server-side, in process)")
    for name, (ms, detail) in results.items():
        target = targets[name]
        print(f"  {name:15} {ms:8.1f} ms   target < {target} ms  {'ok' if ms < target else 'MISSED'}   ({detail})")
    if args.no_compare:
        return
    http = measure_http(args.db, args.repeat)
    mlflow = measure_mlflow(args.db, count, args.repeat)
    print(f"\nfilter + sort + first page of 50 over HTTP, median of {args.repeat} (Runstore also counts all matches)")
    for name, (ms, body) in http.items():
        line = f"  {name:15} Runstore {ms:8.1f} ms ({body['count']} matches)"
        if mlflow:
            other = mlflow[name]["ms"]
            line += f"   MLflow search_runs {other:8.1f} ms   ratio MLflow/Runstore {other / ms:5.1f}x"
        print(line)


if __name__ == "__main__":
    main()
