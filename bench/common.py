"""Shared helpers for the benchmarks: databases, a Runstore server, timing.

Each benchmark sets up its own server and database and tears them down, so
every script can be run again from scratch. Nothing here touches the
``runstore`` database or the test databases: PostgreSQL benchmarks use
``runstore_bench`` (dropped and created each time), SQLite ones a file in a
temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = str(REPO / ".venv" / "bin" / "python")
RESULTS_DIR = BENCH_DIR / "results"

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "runstore")
PG_PASSWORD = os.environ.get("BENCH_PG_PASSWORD", "runstore")
PG_MAINTENANCE_DB = os.environ.get("BENCH_PG_MAINTENANCE_DB", "postgres")
PG_BENCH_DB = "runstore_bench"
FORBIDDEN_DBS = {"runstore", "postgres", "template0", "template1"}


_T0 = time.monotonic()


def log(*args) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s]", *args, file=sys.stderr, flush=True)


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_url(db: str) -> str:
    return f"postgres://{PG_USER}:{PG_PASSWORD}@{PG_HOST}:{PG_PORT}/{db}"


def pg_connect(db: str):
    import psycopg

    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, dbname=db, autocommit=True)


def drop_database(conn, db: str, attempts: int = 20) -> None:
    """``DROP DATABASE ... WITH (FORCE)`` on an autocommit psycopg connection to another database.

    FORCE ends the other sessions on ``db`` only where the role may signal them: an autovacuum
    worker needs membership of pg_signal_backend (``scripts/services.sh`` grants it), a session
    of another role may not be ended at all. While one holds the database the DROP is tried again,
    every 0.5 s, ``attempts`` times in all, then fails naming the sessions."""
    import psycopg

    for attempt in range(attempts):
        try:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse) as exc:
            if attempt == attempts - 1:
                holders = conn.execute(
                    "SELECT pid, usename, backend_type, application_name, state, left(query, 80) "
                    "FROM pg_stat_activity WHERE datname = %s",
                    [db],
                ).fetchall()
                raise RuntimeError(f"database {db} could not be dropped ({exc}); held by {holders}") from exc
            time.sleep(0.5)


def pg_recreate(db: str) -> None:
    """Drop (with its connections) and create a benchmark database."""
    if db in FORBIDDEN_DBS or db.startswith("test_"):
        raise SystemExit(f"refusing to recreate database {db!r}")
    with pg_connect(PG_MAINTENANCE_DB) as conn:
        drop_database(conn, db)
        conn.execute(f'CREATE DATABASE "{db}"')


def pg_drop(db: str) -> None:
    if db in FORBIDDEN_DBS or db.startswith("test_"):
        raise SystemExit(f"refusing to drop database {db!r}")
    with pg_connect(PG_MAINTENANCE_DB) as conn:
        drop_database(conn, db)


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def source_tree(source: str, into: Path) -> tuple[Path, str]:
    """The server code to benchmark: ``worktree`` (this checkout, as it is) or a
    git revision (default ``HEAD``) exported with ``git archive`` into ``into``.

    The checkout is shared with other engineers' uncommitted work, so the
    default measures the last commit; returns (directory, description).
    """
    if source == "worktree":
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        return REPO, f"worktree at {head}{' + uncommitted changes' if dirty else ''}"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", source], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(["git", "archive", commit], cwd=REPO, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {commit} failed")
    return into, f"commit {commit}"


def source_default() -> str:
    return os.environ.get("BENCH_SOURCE", "HEAD")


def resolve_source(source: str | None) -> str:
    """Pin a revision name (HEAD moves while others commit) to its commit hash."""
    source = source or source_default()
    if source == "worktree":
        return source
    return subprocess.run(
        ["git", "rev-parse", "--short", source], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()


class RunstoreServer:
    """A throwaway Runstore: fresh database, migrated, one user + token, gunicorn.

    ``db`` is ``postgres`` (database ``runstore_bench``, TimescaleDB when the
    server has it) or ``sqlite`` (a file in a temporary directory). ``source``
    is a git revision (exported to a temporary directory) or ``worktree``.
    When that code has background tasks (``runs/tasks.py``, e.g. series
    roll-ups) a Celery worker runs beside gunicorn on the embedded
    (filesystem) broker, as in the product's embedded mode; ``celery=False``
    leaves it out.
    """

    def __init__(
        self,
        db: str,
        workers: int = 2,
        threads: int = 2,
        keep: bool = False,
        source: str | None = None,
        celery: bool | None = None,
        pg_db: str = PG_BENCH_DB,
    ):
        if db not in ("postgres", "sqlite"):
            raise ValueError(db)
        self.db, self.workers, self.threads, self.keep = db, workers, threads, keep
        self.pg_db = pg_db
        self.tmp = Path(tempfile.mkdtemp(prefix=f"runstore-bench-{db}-"))
        self.src, self.source = source_tree(source or source_default(), self.tmp / "src")
        if celery is None:
            celery = (self.src / "runs" / "tasks.py").exists()
        self.celery = celery
        self.celery_proc: subprocess.Popen | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sqlite_path = self.tmp / "bench.sqlite3"
        self.proc: subprocess.Popen | None = None
        self.token = ""
        self.env = {
            **os.environ,
            "RUNSTORE_VAR_DIR": str(self.tmp / "var"),
            "DATABASE_URL": pg_url(pg_db) if db == "postgres" else f"sqlite:///{self.sqlite_path}",
            "DJANGO_SETTINGS_MODULE": "tracker.settings",
            "DEBUG": "false",
        }
        self.env.pop("DATABASE_CONN_MAX_AGE", None)

    def manage(self, *args: str, capture: bool = True) -> str:
        out = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=self.src,
            env=self.env,
            check=True,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE,
        )
        return out.stdout

    def python(self, script: str, *args: str) -> str:
        """Run a bench script with Django set up against this server's database."""
        out = subprocess.run(
            [PYTHON, str(BENCH_DIR / script), *args],
            cwd=self.src,
            env={**self.env, "BENCH_SRC": str(self.src)},
            check=True,
            text=True,
            stdout=subprocess.PIPE,
        )
        return out.stdout

    def __enter__(self) -> RunstoreServer:
        if self.db == "postgres":
            pg_recreate(self.pg_db)
        self.manage("migrate", "--noinput")
        self.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User; User.objects.create_user('bench', password='x')",
        )
        self.token = self.manage("createtoken", "bench").strip().splitlines()[-1].strip()
        self.log = open(self.tmp / "gunicorn.log", "w")
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "tracker.wsgi:application",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                str(self.workers),
                "--threads",
                str(self.threads),
                "--timeout",
                "300",
                "--log-level",
                "warning",
            ],
            cwd=self.src,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.celery:
            self.celery_proc = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "celery",
                    "-A",
                    "tracker",
                    "worker",
                    "-c",
                    "1",
                    "--loglevel",
                    "warning",
                    "--logfile",
                    str(self.tmp / "celery.log"),
                ],
                cwd=self.src,
                env=self.env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http(self.url + "/healthz", proc=self.proc)
        return self

    def queue_dir(self) -> Path:
        return Path(self.env["RUNSTORE_VAR_DIR"]) / "celery" / "queue"

    def wait_tasks(self, timeout: float = 300.0) -> float:
        """Wait until the embedded broker's queue is empty (tasks are acknowledged
        after they ran); return the seconds waited."""
        if self.celery_proc is None:
            return 0.0
        start = time.monotonic()
        quiet = 0
        while time.monotonic() - start < timeout:
            if self.celery_proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.celery_proc.returncode}")
            pending = [p for p in self.queue_dir().glob("*") if p.is_file()] if self.queue_dir().exists() else []
            quiet = quiet + 1 if not pending else 0
            if quiet >= 3:
                return time.monotonic() - start
            time.sleep(0.2)
        raise RuntimeError(f"background tasks still queued after {timeout}s")

    def __exit__(self, *exc) -> None:
        if self.celery_proc is not None:
            stop_process(self.celery_proc, timeout=30)
        if self.proc is not None:
            stop_process(self.proc)
            self.log.close()
        if self.keep:
            log(f"kept {self.tmp}")
            return
        if self.db == "postgres":
            try:
                pg_drop(self.pg_db)
            except RuntimeError as exc:  # the next run's pg_recreate drops it; the results stand
                log(f"warning: {exc}")
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- HTTP ----------------------------------------------------------------

    def session(self):
        import requests

        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {self.token}"
        return s

    def create_run(self, session, project: str = "bench/ingest") -> str:
        r = session.post(self.url + "/api/v1/runs/", json={"project": project})
        r.raise_for_status()
        return r.json()["uuid"]

    # --- storage -------------------------------------------------------------

    def float_storage(self) -> dict:
        """Bytes the float-point table takes (heap + indexes) and its row count."""
        if self.db == "postgres":
            with pg_connect(self.pg_db) as conn:
                conn.execute("VACUUM ANALYZE runs_floatpoint")
                count = conn.execute("SELECT count(*) FROM runs_floatpoint").fetchone()[0]
                hyper = (
                    conn.execute(
                        "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'runs_floatpoint'"
                    ).fetchone()
                    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
                    else None
                )
                if hyper:
                    size = conn.execute("SELECT hypertable_size('runs_floatpoint')").fetchone()[0]
                    how = "hypertable_size('runs_floatpoint')"
                else:
                    size = conn.execute("SELECT pg_total_relation_size('runs_floatpoint')").fetchone()[0]
                    how = "pg_total_relation_size('runs_floatpoint')"
                extra = {}
                for table in ("runs_seriesrollup",):
                    if conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0]:
                        extra[table] = conn.execute("SELECT pg_total_relation_size(%s)", [table]).fetchone()[0]
                # packed blocks (runs.blocks) hold every full block's worth of points
                if conn.execute("SELECT to_regclass('runs_floatblock')").fetchone()[0]:
                    conn.execute("VACUUM ANALYZE runs_floatblock")
                    count += conn.execute("SELECT COALESCE(sum(count), 0) FROM runs_floatblock").fetchone()[0]
                    size += conn.execute(
                        "SELECT hypertable_size('runs_floatblock')"
                        if hyper
                        else "SELECT pg_total_relation_size('runs_floatblock')"
                    ).fetchone()[0]
                    how += " + runs_floatblock"
            return {"bytes": size, "points": count, "how": how, "hypertable": bool(hyper), "other_tables_bytes": extra}
        import sqlite3

        conn = sqlite3.connect(self.sqlite_path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE tbl_name IN ('runs_floatpoint', 'runs_floatblock') "
                    "AND type IN ('table', 'index')"
                )
            ]
            marks = ",".join("?" * len(names))
            size = conn.execute(f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({marks})", names).fetchone()[0]
            count = conn.execute("SELECT count(*) FROM runs_floatpoint").fetchone()[0]
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs_floatblock'").fetchone():
                count += conn.execute("SELECT COALESCE(sum(count), 0) FROM runs_floatblock").fetchone()[0]
            extra = {}
            for table in ("runs_seriesrollup",):
                names = [
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE tbl_name = ? AND type IN ('table', 'index')", [table]
                    )
                ]
                if names:
                    extra[table] = conn.execute(
                        f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({','.join('?' * len(names))})", names
                    ).fetchone()[0]
        finally:
            conn.close()
        return {
            "bytes": size,
            "points": count,
            "how": "dbstat over runs_floatpoint, runs_floatblock and their indexes",
            "hypertable": False,
            "other_tables_bytes": extra,
        }


def save_result(name: str, data: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path
