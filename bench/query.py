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

On PostgreSQL a fresh fill is measured as a real install sees it after a bulk
import: analyzed but not vacuumed (autovacuum is off on the query tables until
then), then again after the maintenance task (``runs/maintenance.py``, what the
``maintenance`` queue runs after bulk writes). The task is not called here: the
bulk import's tail (``--tail-runs`` new runs with their fields) is written
through the API, a Celery worker on the ``maintenance`` queue runs the check
that those writes queue, and the bench reports how many seconds after the last
write the check started and finished (``--direct-maintenance``: the old way). ``--baseline DIR`` serves another
source tree (e.g. ``git archive`` of an earlier commit) beside this one and calls
the two in turn for every HTTP sample; ``--profile`` only breaks the sentence's
API request down (each SQL statement, then a Python profile); ``--no-points``
skips the series points, which these queries do not read.
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
        from common import drop_database  # bench/common.py, beside this script

        name = url.rsplit("/", 1)[1]
        admin = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if fresh and exists:
                drop_database(conn, name)
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


def generate(db: str, count: int, points: bool = True) -> None:
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
    if connection.vendor == "postgresql":
        _autovacuum(connection, False)
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
    if points:
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
    """100 points per float series, generated inside the database (as rows of ``runs_floatpoint``
    while the series store has that table; the queries measured here read only the run fields)."""
    if "runs_floatpoint" not in connection.introspection.table_names():
        print("points skipped: no runs_floatpoint table", file=sys.stderr)
        return
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


def measure_http(db: str, repeat: int, trees: dict | None = None) -> dict:
    """The same queries (and the value suggestions) through the REST API of a gunicorn server
    (2 workers) on this database: {case: (median ms, last body)}. With ``trees`` ({label: source
    tree}), one server per tree, all up at once and called in turn for every sample, so each
    tree's numbers come from the same moments of a shared machine: {label: {case: ...}}."""
    import socket
    import subprocess

    import requests
    from django.contrib.auth.models import User

    from accounts.models import ApiToken

    _, token = ApiToken.issue(User.objects.get(username="bench"), name="bench")
    servers = {}
    for label, tree in (trees or {"": REPO}).items():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        servers[label] = (
            f"http://127.0.0.1:{port}",
            subprocess.Popen(
                [
                    str(REPO / ".venv" / "bin" / "gunicorn"),
                    "tracker.wsgi:application",
                    "-b",
                    f"127.0.0.1:{port}",
                    "-w",
                    "2",
                ],
                cwd=tree,
                env={**os.environ, "PYTHONPATH": str(tree)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        )
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        for base, _ in servers.values():
            for _ in range(120):
                try:
                    session.get(f"{base}/healthz", timeout=1)
                    break
                except requests.RequestException:
                    time.sleep(0.5)
        cases = [(name, "/api/v1/runs/", {"limit": 50, **params}) for name, params in HTTP_CASES.items()]
        cases.append(("suggest_values", "/api/v1/runs/suggest", {"text": 'parameters/optimizer/name = "'}))
        out: dict = {label: {} for label in servers}
        for name, path, params in cases:
            params = {"project": "bench/query", **params}
            samples: dict = {label: [] for label in servers}
            bodies = {}
            for round_ in range(repeat + 2):  # two warm-up rounds (each server has two workers)
                # the order turns every round: the second call of a round finds the database's caches
                # warmed by the first's identical query
                order = list(servers.items())
                for label, (base, _) in order if round_ % 2 else reversed(order):
                    t0 = time.perf_counter()
                    response = session.get(f"{base}{path}", params=params, timeout=60)
                    ms = (time.perf_counter() - t0) * 1000
                    response.raise_for_status()
                    bodies[label] = response.json()
                    if round_ >= 2:
                        samples[label].append(ms)
            for label in servers:
                out[label][name] = (statistics.median(samples[label]), bodies[label])
        return out if trees else out[""]
    finally:
        for _, server in servers.values():
            server.terminate()
            server.wait(timeout=30)


HTTP_CASES = {
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


def profile_view(repeat: int) -> None:
    """Where the time of the sentence's ``GET /api/v1/runs/`` goes, in process (Django's test client,
    no HTTP server): each SQL statement's median time, the Python between them, and a profile."""
    import cProfile
    import pstats

    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from accounts.models import ApiToken

    _, token = ApiToken.issue(User.objects.get(username="bench"), name="bench-profile")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    params = {"project": "bench/query", "limit": 50, **HTTP_CASES["sentence"]}
    statements: list[list[tuple[str, float]]] = []

    def wrapper(execute, sql, sql_params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, sql_params, many, context)
        finally:
            statements[-1].append((sql, (time.perf_counter() - t0) * 1000))

    def call():
        response = client.get("/api/v1/runs/", params)
        assert response.status_code == 200, response.content[:500]
        return response

    call()
    totals = []
    with connection.execute_wrapper(wrapper):
        for _ in range(repeat):
            statements.append([])
            t0 = time.perf_counter()
            call()
            totals.append((time.perf_counter() - t0) * 1000)
    total = statistics.median(totals)
    sql_total = statistics.median(sum(ms for _, ms in request) for request in statements)
    print(
        f"\nGET /api/v1/runs/ (the sentence), in process, median of {repeat}: {total:.1f} ms, of it SQL {sql_total:.1f} ms"
    )
    for index, (sql, _) in enumerate(statements[0]):
        ms = statistics.median(request[index][1] for request in statements if len(request) > index)
        print(f"  {ms:7.2f} ms  {' '.join(sql.split())[:150]}")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeat):
        call()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


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
    parser.add_argument("--profile", action="store_true", help="only profile the sentence's API view in process")
    parser.add_argument(
        "--no-points", action="store_true", help="fill no series points (the queries measured read only run fields)"
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="another source tree (e.g. an earlier commit) served beside this one over HTTP",
    )
    parser.add_argument(
        "--direct-maintenance",
        action="store_true",
        help="call the maintenance pass in this process instead of timing the worker's after the import's tail",
    )
    parser.add_argument(
        "--tail-runs",
        type=int,
        default=5,
        help="runs (each with its ~50 fields) the bulk import's tail writes through the API (default 5)",
    )
    args = parser.parse_args()
    window = None
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
    generate(args.db, count, points=not args.no_points)
    if args.profile:
        profile_view(args.repeat)
        return
    trees = {"now": REPO, "baseline": Path(args.baseline).resolve()} if args.baseline else None
    load = [os.getloadavg()[0]]
    # phase -> (in-process results, HTTP results or None)
    phases = {
        "fresh fill": (
            measure(args.db, args.repeat),
            None if args.no_compare else measure_http(args.db, args.repeat, trees),
        )
    }
    if args.db == "postgres":
        # what the maintenance queue does after a bulk write (runs/maintenance.py), then the same again
        from django.db import connection

        from runs import maintenance

        load.append(os.getloadavg()[0])
        if args.direct_maintenance:
            started = time.monotonic()
            done = maintenance.maintain()
            took = time.monotonic() - started
            window = None
        else:
            done, took, window = maintenance_window(args.tail_runs)
        _autovacuum(connection, True)
        print(f"\nmaintenance task: {done or 'nothing due'} in {took:.1f} s", file=sys.stderr)
        if done:
            phases["after the maintenance task"] = (
                measure(args.db, args.repeat),
                None if args.no_compare else measure_http(args.db, args.repeat, trees),
            )
    load.append(os.getloadavg()[0])
    targets = {
        "sentence": 150 if args.db == "postgres" else 300,
        "series_filter": 300,
        "suggest_path": 50,
        "suggest_values": 50,
    }
    print(
        f"\nquery engine, {args.db}, {count} runs x ~50 fields, median of {args.repeat}; "
        f"load average (1 min) {' / '.join(f'{x:.2f}' for x in load)} at the start / between / end"
    )
    if args.db == "postgres" and window is not None:
        print(
            f"  maintenance after the bulk import's last write through the API (a Celery worker on the "
            f"maintenance queue): finished {window['finished']:.1f} s after it (check started after "
            f"{window['started']:.1f} s; {window['done'] or 'nothing due'} took {took:.1f} s)"
        )
    names = list(phases)
    print(f"  in process: {' | '.join(names)}")
    for name in phases[names[0]][0]:
        cells = [phases[phase][0][name][0] for phase in names]
        line = "   ".join(f"{ms:8.1f} ms" for ms in cells)
        if len(cells) > 1:
            line += f"   ({cells[0] / cells[-1]:4.2f}x)"
        target = targets[name]
        line += (
            f"   target < {target} ms  {'ok' if cells[-1] < target else 'MISSED'}   ({phases[names[-1]][0][name][1]})"
        )
        print(f"  {name:15} {line}")
    if args.no_compare:
        return
    http_targets = {"sentence": 100, "suggest_values": 50}
    mlflow = measure_mlflow(args.db, count, args.repeat)
    print(
        f"  over HTTP (gunicorn, 2 workers{'; this tree beside the baseline ' + args.baseline if trees else ''}): "
        f"{' | '.join(names)}"
    )
    for name in phases[names[0]][1] if not trees else phases[names[0]][1]["now"]:
        parts, last, body = [], None, None
        for phase in names:
            http = phases[phase][1]
            ms, body = (http["now"] if trees else http)[name]
            cell = f"{ms:8.1f} ms"
            if trees:
                base = http["baseline"][name][0]
                cell += f" (baseline {base:.1f} ms, {base / ms:4.2f}x)"
            parts.append(cell)
            last = ms
        line = f"  {name:15} {'   '.join(parts)}"
        target = http_targets.get(name)
        if target:
            line += f"   target < {target} ms  {'ok' if last < target else 'MISSED'}"
        if "count" in body:
            line += f"   ({body['count']} matches)"
        if mlflow and name in mlflow:
            other = mlflow[name]["ms"]
            line += f"   MLflow search_runs {other:8.1f} ms   ratio MLflow/Runstore {other / last:5.1f}x"
        print(line)


def maintenance_window(tail_runs: int) -> tuple[dict, float, dict]:
    """The bulk import's tail through the API (``tail_runs`` new runs, each a batch of its ~50
    fields, in process through Django's test client), with a Celery worker on the ``maintenance``
    queue as a real install runs it: how many seconds after the last write's response the
    maintenance check started and finished (``pg_stat_user_tables``' last ANALYZE of the attribute
    table, then the pass's advisory lock), what it did and how long it took."""
    import subprocess

    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from accounts.models import ApiToken
    from projects.models import Project
    from runs import maintenance
    from runs.models import Attribute

    worker = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "celery", "-A", "tracker", "worker", "-Q", "maintenance"]
        + ["-c", "1", "--loglevel", "warning", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(8)  # the worker is up and polling its queue
        table = Attribute._meta.db_table
        _, token = ApiToken.issue(User.objects.get(username="bench"), name="bench-tail")
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        project = Project.objects.get(workspace__slug="bench", slug="query")
        rng = random.Random(11)
        tail_start = time.time()
        for index in range(tail_runs):
            response = client.post(
                "/api/v1/runs/", {"project": "bench/query", "name": f"tail-{index}"}, content_type="application/json"
            )
            assert response.status_code == 201, response.content[:300]
            number = response.json()["id"].rsplit("-", 1)[1]
            ops = [
                {"op": "assign", "path": path, "value": value}
                for path, _, value in fields_for(rng, int(number))
                if not path.startswith("sys/")
            ]
            response = client.post(
                f"/api/v1/runs/bench/query/{project.key}-{number}/batch",
                {"stream": "s", "seq": 1, "ops": ops},
                content_type="application/json",
            )
            assert response.status_code == 200, response.content[:300]
        last_write = time.time()
        started = finished = None
        key = maintenance._LOCK_KEY
        while time.time() - last_write < 120:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND classid = %s AND objid = %s AND objsubid = 1), "
                    "(SELECT extract(epoch FROM last_analyze) FROM pg_stat_user_tables WHERE relname = %s)",
                    [key >> 32, key & 0xFFFFFFFF, table],
                )
                held, analyzed = cursor.fetchone()
            now = time.time()
            if held and started is None:
                started = now
            if not held and analyzed and float(analyzed) > last_write:
                finished = now
                break
            time.sleep(0.02)
        if finished is None:
            raise SystemExit("the maintenance check did not run within 120 s of the import's last write")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname, extract(epoch FROM last_vacuum), extract(epoch FROM last_analyze) "
                "FROM pg_stat_user_tables WHERE relname = ANY(%s)",
                [maintenance.query_tables()],
            )
            rows = cursor.fetchall()
        since = tail_start  # a pass that began during the tail counts too
        done = {
            name: "vacuum" if vacuumed and float(vacuumed) > since else "analyze"
            for name, vacuumed, analyzed in rows
            if analyzed and float(analyzed) > since
        }
        started = (started or finished) - last_write
        return (
            done,
            finished - last_write - started,
            {"finished": finished - last_write, "started": started, "done": done},
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def _autovacuum(connection, enabled: bool) -> None:
    """Autovacuum off on the query tables while a fresh fill is measured as a real install sees it
    until autovacuum comes round (or the maintenance task runs); on again after."""
    from runs import maintenance

    with connection.cursor() as cursor:
        for table in maintenance.query_tables():
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = {'on' if enabled else 'off'})")


if __name__ == "__main__":
    main()
