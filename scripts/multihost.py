#!/usr/bin/env python3
"""Runstore on several hosts, for real, on this machine: each part in a network namespace of its own.

    sudo .venv/bin/python scripts/multihost.py [--points 1000000] [--runs 20] [--keep-logs DIR]

Hosts (namespace ``rs-<name>``, address 10.77.0.X on a veth pair whose other end is on the bridge
``rsbr0``, which this script creates with 10.77.0.1 for the client in the root namespace):

    db 10      PostgreSQL + TimescaleDB primary        lb 20       nginx, round robin over web1 and web2
    replica 11 streaming replica (pg_basebackup -R)    web1 21     gunicorn (2 workers)
    redis 12   Redis (append-only file, fsync always)  web2 22     gunicorn (2 workers)
    s3 13      SeaweedFS (S3)                          worker1 31  Celery worker
                                                       worker2 32  Celery worker

The client, in the root namespace, logs ``--points`` points over ``--runs`` runs (and one image per
run, whose preview a worker makes) through the balancer, paced over about 40 s, while the script kills
(SIGKILL) and restarts web1, worker1 and Redis in turn. Afterwards it checks that every point is on the
server exactly once (through the API), that every roll-up and preview is done (the periodic sweeps run
once, as beat would, for work whose task could not be queued while Redis was down), and that the
replica holds the same points as the primary; then prints points/s, the time to drain, lost and
duplicated points, and the load balancer's answers.

Traffic goes only to these test hosts: the namespaces have no route but their /24, and the root
namespace reaches them through the bridge only. Every wait is bounded. Everything (processes,
namespaces, links, the bridge, the temporary directory) is removed at the end, also after a failure,
and leftovers of an earlier interrupted run are removed first. Needs root, PostgreSQL with
TimescaleDB, Redis and nginx (installed with apt-get when missing)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv" / "bin"
SUBNET = "10.77.0"
BRIDGE = "rsbr0"
HOSTS = {
    "db": 10,
    "replica": 11,
    "redis": 12,
    "s3": 13,
    "lb": 20,
    "web1": 21,
    "web2": 22,
    "worker1": 31,
    "worker2": 32,
}
S3_KEY, S3_SECRET, S3_BUCKET = "runstore", "runstore-secret", "runstore"


def ip(host: str) -> str:
    return f"{SUBNET}.{HOSTS[host]}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def sh(*args: str, check: bool = True, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


def in_ns(host: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", f"rs-{host}", *args]


def wait_for(check: Any, *, timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# -- the network ------------------------------------------------------------------------------------
def net_down() -> None:
    for host in HOSTS:
        sh("ip", "netns", "pids", f"rs-{host}", check=False)
        pids = sh("ip", "netns", "pids", f"rs-{host}", check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        sh("ip", "netns", "del", f"rs-{host}", check=False)
        sh("ip", "link", "del", f"rsv-{host}", check=False)
    sh("ip", "link", "del", BRIDGE, check=False)


def net_up() -> None:
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    for host in HOSTS:
        ns, outer, inner = f"rs-{host}", f"rsv-{host}", f"rsp-{host}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        sh("ip", "link", "set", inner, "netns", ns)
        sh("ip", "link", "set", outer, "master", BRIDGE, "up")
        sh(*in_ns(host, "ip", "addr", "add", f"{ip(host)}/24", "dev", inner))
        sh(*in_ns(host, "ip", "link", "set", inner, "up"))
        sh(*in_ns(host, "ip", "link", "set", "lo", "up"))


# -- the processes ----------------------------------------------------------------------------------
class Deployment:
    def __init__(self, root: Path):
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pg_bin = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1]).parent
        self.token = ""
        self.env = {
            "PATH": f"{VENV}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(root),
            "DJANGO_SETTINGS_MODULE": "tracker.settings",
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": f"postgres://runstore@{ip('db')}:5432/runstore",
            "DATABASE_REPLICA_URL": f"postgres://runstore@{ip('replica')}:5432/runstore",
            "RUNSTORE_TIMESCALEDB": "required",
            "CELERY_BROKER_URL": f"redis://{ip('redis')}:6379/0",
            "CELERY_RESULT_BACKEND": f"redis://{ip('redis')}:6379/0",
            "CELERY_VISIBILITY_TIMEOUT": "10",
            "RUNSTORE_STORAGE": "s3",
            "RUNSTORE_S3_ENDPOINT_URL": f"http://{ip('s3')}:8333",
            "RUNSTORE_S3_BUCKET": S3_BUCKET,
            "RUNSTORE_S3_ACCESS_KEY": S3_KEY,
            "RUNSTORE_S3_SECRET_KEY": S3_SECRET,
            "ALLOWED_HOSTS": ",".join([ip("lb"), ip("web1"), ip("web2"), "127.0.0.1", "localhost"]),
            "SECRET_KEY": "multihost-test-only-" + os.urandom(16).hex(),
            "RUNSTORE_VAR_DIR": str(root / "var-manage"),
        }

    # processes started here run in their own session: killed as a group
    def spawn(self, name: str, host: str, args: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.root / f"{name}.log", "ab") as out:
            self.procs[name] = subprocess.Popen(
                in_ns(host, *args),
                cwd=REPO,
                env=env or self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(20)

    def manage(self, *args: str, host: str = "web1") -> str:
        result = sh(*in_ns(host, str(VENV / "python"), "manage.py", *args), cwd=REPO, env=self.env, timeout=600)
        return result.stdout

    # -- PostgreSQL ----------------------------------------------------------------------------
    def pg(self, host: str, *args: str, check: bool = True) -> None:
        sh(*in_ns(host, "runuser", "-u", "postgres", "--", *args), check=check, timeout=180)

    def pg_conf(self, data: Path, host: str) -> None:
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '{ip(host)}'\nport = 5432\nunix_socket_directories = '{data.parent}'\n"
                "shared_preload_libraries = 'timescaledb'\ntimescaledb.telemetry_level = off\n"
                "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
            )

    def start_databases(self) -> None:
        primary, replica = self.root / "db" / "data", self.root / "replica" / "data"
        for folder in (primary.parent, replica.parent):
            folder.mkdir()
            shutil.chown(folder, "postgres", "postgres")
        self.pg("db", str(self.pg_bin / "initdb"), "-D", str(primary), "-A", "trust", "-U", "runstore", "--no-sync")
        self.pg_conf(primary, "db")
        with open(primary / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\nhost replication all {SUBNET}.0/24 trust\n")
        self.pg(
            "db",
            str(self.pg_bin / "pg_ctl"),
            "-D",
            str(primary),
            "-l",
            str(self.root / "db" / "postgres.log"),
            "-w",
            "start",
        )
        sh(str(self.pg_bin / "createdb"), "-h", ip("db"), "-U", "runstore", "runstore")
        self.pg(
            "replica",
            str(self.pg_bin / "pg_basebackup"),
            "-h",
            ip("db"),
            "-U",
            "runstore",
            "-D",
            str(replica),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )
        self.pg_conf(replica, "replica")
        self.pg(
            "replica",
            str(self.pg_bin / "pg_ctl"),
            "-D",
            str(replica),
            "-l",
            str(self.root / "replica" / "postgres.log"),
            "-w",
            "start",
        )

    def stop_databases(self) -> None:
        for host in ("replica", "db"):
            data = self.root / host / "data"
            if data.exists():
                self.pg(
                    host, str(self.pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", check=False
                )

    # -- Redis, S3, web, workers, balancer ------------------------------------------------------
    def start_redis(self) -> None:
        (self.root / "redis").mkdir(exist_ok=True)
        self.spawn(
            "redis",
            "redis",
            [
                "redis-server",
                "--bind",
                ip("redis"),
                "--port",
                "6379",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.root / "redis"),
            ],
        )
        import redis

        client = redis.Redis(host=ip("redis"), port=6379, socket_timeout=1)
        wait_for(lambda: _ok(client.ping), timeout=30, what="Redis")

    def start_s3(self) -> None:
        (self.root / "s3").mkdir()
        self.spawn(
            "s3",
            "s3",
            [
                str(VENV / "weed"),
                "server",
                f"-dir={self.root / 's3'}",
                f"-ip={ip('s3')}",
                "-ip.bind=0.0.0.0",
                "-master.port=9333",
                "-volume.port=8084",
                "-filer.port=8888",
                "-master.volumeSizeLimitMB=128",
                "-volume.max=100",
                "-volume.preStopSeconds=0",
                "-master.telemetry=false",
                "-s3",
                "-s3.port=8333",
                f"-s3.config={REPO / 'scripts' / 's3.json'}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ],
        )
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://{ip('s3')}:8333",
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )
        wait_for(lambda: _ok(lambda: s3.create_bucket(Bucket=S3_BUCKET)), timeout=90, what="SeaweedFS S3", interval=1)

    def start_web(self, host: str) -> None:
        env = {**self.env, "RUNSTORE_VAR_DIR": str(self.root / f"var-{host}")}
        self.spawn(
            host,
            host,
            [
                str(VENV / "python"),
                "-m",
                "gunicorn",
                "tracker.wsgi:application",
                "-b",
                f"{ip(host)}:8000",
                "-w",
                "2",
                "--threads",
                "4",
                "--timeout",
                "120",
                "--graceful-timeout",
                "5",
            ],
            env,
        )
        import requests

        wait_for(
            lambda: _ok(lambda: requests.get(f"http://{ip(host)}:8000/healthz", timeout=2).status_code == 200),
            timeout=90,
            what=f"gunicorn on {host}",
        )

    def start_worker(self, host: str) -> None:
        env = {**self.env, "RUNSTORE_VAR_DIR": str(self.root / f"var-{host}")}
        logfile = self.root / f"{host}.log"
        offset = logfile.stat().st_size if logfile.exists() else 0
        self.spawn(
            host,
            host,
            [
                str(VENV / "celery"),
                "-A",
                "tracker",
                "worker",
                "-Q",
                "ingest,media,maintenance",
                "-c",
                "1",
                "-n",
                f"{host}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "INFO",
            ],
            env,
        )
        wait_for(lambda: b" ready." in logfile.read_bytes()[offset:], timeout=90, what=f"Celery on {host}")

    def start_balancer(self) -> None:
        lb = self.root / "lb"
        lb.mkdir()
        conf = lb / "nginx.conf"
        conf.write_text(
            textwrap.dedent(f"""
            worker_processes 1;
            daemon off;
            pid {lb}/nginx.pid;
            error_log {lb}/error.log warn;
            events {{ worker_connections 1024; }}
            http {{
                log_format brief '$request_method $uri $status $upstream_addr';
                access_log {lb}/access.log brief;
                client_body_temp_path {lb}/body; proxy_temp_path {lb}/proxy;
                fastcgi_temp_path {lb}/fastcgi; uwsgi_temp_path {lb}/uwsgi; scgi_temp_path {lb}/scgi;
                client_max_body_size 0;
                upstream web {{
                    server {ip("web1")}:8000 max_fails=1 fail_timeout=3s;
                    server {ip("web2")}:8000 max_fails=1 fail_timeout=3s;
                    keepalive 16;
                }}
                server {{
                    listen {ip("lb")}:80;
                    location / {{
                        proxy_pass http://web;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_set_header Host $host;
                        proxy_read_timeout 120s;
                        # a batch cut by a dying web host is sent to the other one: batches are idempotent
                        proxy_next_upstream error timeout http_502 non_idempotent;
                    }}
                }}
            }}
            """)
        )
        self.spawn("lb", "lb", ["nginx", "-c", str(conf), "-p", str(lb)])
        import requests

        wait_for(
            lambda: _ok(lambda: requests.get(f"http://{ip('lb')}/healthz", timeout=2).status_code == 200),
            timeout=30,
            what="nginx",
        )

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name)
        self.stop_databases()


def _ok(call: Any) -> Any:
    try:
        return call()
    except Exception:  # noqa: BLE001 - not up yet
        return False


# -- the client workload (each process logs several runs, paced) -----------------------------------
CLIENT = r"""
import json, sys, time
import runstore
url, token, first, count, steps, series, duration, image = sys.argv[1:9]
first, count, steps, series, duration = int(first), int(count), int(steps), int(series), float(duration)
runs = [runstore.init_run(project="alice/multihost", api_token=token, url=url, name=f"run-{first + i}",
                          flush_period=0.2, capture_stdout=False, capture_stderr=False,
                          capture_hardware_metrics=False, capture_source=False, capture_environment=False)
        for i in range(count)]
for run in runs:
    run["samples/image"].upload(image)
chunks = 40
start = time.time()
for chunk in range(chunks):
    for step in range(chunk * steps // chunks, (chunk + 1) * steps // chunks):
        for i, run in enumerate(runs):
            for s in range(series):
                run[f"train/s{s}"].append(step * 0.5 + s + first + i, step=step)
    pause = start + duration * (chunk + 1) / chunks - time.time()
    if pause > 0:
        time.sleep(pause)
for run in runs:
    assert run.wait(900), run.status()
acked = time.time()
uuids = [str(run._info["uuid"]) for run in runs]
for run in runs:
    run.stop(timeout=120)
print(json.dumps({"uuids": uuids, "first": first, "acked": acked}), flush=True)
"""


def check_points(url: str, token: str, runs: list[tuple[str, int]], steps: int, series: int) -> tuple[int, int]:
    """(lost, duplicated) over every series of every run, read through the balancer."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    lost = duplicated = 0
    for uuid, index in runs:
        fields = session.get(f"{url}/api/v1/runs/{uuid}/attributes", timeout=60).json()["fields"]
        stats = {f["path"]: f["value"] for f in fields if f["type"] == "float_series"}
        for s in range(series):
            path = f"train/s{s}"
            seen: Counter[int] = Counter()
            after = None
            for _ in range(steps // 10_000 + 2):
                params: dict[str, Any] = {"path": path, "limit": 10_000}
                if after is not None:
                    params["after_step"] = after
                page = session.get(f"{url}/api/v1/runs/{uuid}/series/points", params=params, timeout=60).json()
                if not page["steps"]:
                    break
                seen.update(page["steps"])
                after = page["steps"][-1]
            lost += steps - len(seen)
            counted = int(stats.get(path, {}).get("count") or 0)
            duplicated += sum(c - 1 for c in seen.values()) + max(0, counted - steps)
            expected_avg = (steps - 1) * 0.25 + s + index
            if abs(float(stats.get(path, {}).get("avg") or 0) - expected_avg) > 1e-6 * max(1, expected_avg):
                duplicated += 1  # a point counted twice in the running statistics
    return lost, duplicated


def replica_matches(dep: Deployment) -> bool:
    import psycopg

    # the open tails (rows) and the packed blocks (their bytes' digests)
    query = (
        "SELECT series_id, count(*), sum(value), NULL FROM runs_floatpoint GROUP BY series_id "
        "UNION ALL SELECT series_id, count, first_step, md5(value_data) FROM runs_floatblock ORDER BY 1, 3"
    )
    with psycopg.connect(dep.env["DATABASE_URL"]) as primary:
        lsn = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        expected = primary.execute(query).fetchall()
    with psycopg.connect(dep.env["DATABASE_REPLICA_URL"]) as replica:
        wait_for(
            lambda: replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone()[0],
            timeout=120,
            what="the replica to replay the primary's WAL",
        )
        return replica.execute(query).fetchall() == expected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--series", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4, help="client processes (the runs are spread over them)")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds over which the points are logged")
    parser.add_argument("--keep-logs", help="copy every host's log here at the end")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("multihost.py needs root (network namespaces)")
    if args.runs % args.clients or args.points % (args.runs * args.series):
        sys.exit("--runs must divide by --clients, and --points by --runs × --series")
    if shutil.which("nginx") is None:
        log("installing nginx (apt-get install nginx-light)")
        sh(
            "apt-get",
            "install",
            "-y",
            "-q",
            "nginx-light",
            timeout=600,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    steps = args.points // (args.runs * args.series)
    root = Path(tempfile.mkdtemp(prefix="runstore-multihost-"))
    os.chmod(root, 0o755)
    dep = Deployment(root)
    net_down()  # leftovers of an interrupted run
    status = 1
    try:
        net_up()
        log(f"network: bridge {BRIDGE} {SUBNET}.1/24, {len(HOSTS)} namespaces")
        dep.start_databases()
        log(f"PostgreSQL primary {ip('db')} and streaming replica {ip('replica')} up")
        dep.start_redis()
        dep.start_s3()
        log(f"Redis {ip('redis')}, SeaweedFS {ip('s3')} up")
        dep.manage("migrate", "--noinput")
        out = dep.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User; from django.core.management import call_command; "
            "User.objects.create_user('alice', password='pw'); call_command('createtoken', 'alice')",
        )
        dep.token = out.strip().splitlines()[-1].strip()
        for host in ("web1", "web2"):
            dep.start_web(host)
        for host in ("worker1", "worker2"):
            dep.start_worker(host)
        dep.start_balancer()
        url = f"http://{ip('lb')}"
        log(f"web1, web2, worker1, worker2 and the balancer {url} up")

        from PIL import Image

        image = root / "sample.png"
        Image.linear_gradient("L").resize((1024, 1024)).save(image)
        per_client = args.runs // args.clients
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTORE_")}
        client_env["RUNSTORE_HOME"] = str(root / "client-home")
        clients = []
        started = time.time()
        for c in range(args.clients):
            with open(root / f"client-{c}.log", "ab") as err:
                clients.append(
                    subprocess.Popen(
                        [
                            str(VENV / "python"),
                            "-c",
                            CLIENT,
                            url,
                            dep.token,
                            str(c * per_client),
                            str(per_client),
                            str(steps),
                            str(args.series),
                            str(args.duration),
                            str(image),
                        ],
                        stdout=subprocess.PIPE,
                        stderr=err,
                        env=client_env,
                    )
                )
        log(f"{args.clients} clients logging {args.points:,} points over {args.runs} runs for ~{args.duration:.0f} s")
        faults = [
            (0.15, "kill web1", lambda: dep.kill("web1")),
            (0.25, "restart web1", lambda: dep.start_web("web1")),
            (0.35, "kill worker1", lambda: dep.kill("worker1")),
            (0.45, "restart worker1", lambda: dep.start_worker("worker1")),
            (0.55, "kill Redis", lambda: dep.kill("redis")),
            (0.65, "restart Redis", dep.start_redis),
        ]
        for at, what, action in faults:
            time.sleep(max(0.0, started + at * args.duration - time.time()))
            action()
            log(f"fault: {what}")
        results = []
        for proc in clients:
            out, _ = proc.communicate(timeout=1800)
            if proc.returncode != 0:
                raise RuntimeError(f"a client failed: see {root}/client-*.log")
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        acked = max(r["acked"] for r in results)
        rate = args.points / (acked - started)
        log(f"all {args.points:,} points acknowledged in {acked - started:.1f} s ({rate:,.0f} points/s)")

        # What beat does every 5 and 10 minutes, now: work whose task could not be queued while Redis was down.
        swept = (
            dep.manage(
                "shell",
                "-c",
                "from runs import processing, rollups; print(len(rollups.stale_series()), processing.sweep())",
            )
            .strip()
            .splitlines()[-1]
            .split()
        )
        sh(
            *in_ns("web1", str(VENV / "celery"), "-A", "tracker", "call", "runs.tasks.sweep_rollups"),
            cwd=REPO,
            env=dep.env,
        )
        runs = [(uuid, r["first"] + i) for r in results for i, uuid in enumerate(r["uuids"])]
        import requests

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {dep.token}"

        def drained() -> bool:
            stale = dep.manage("shell", "-c", "from runs import rollups; print(len(rollups.stale_series()))")
            if stale.strip().splitlines()[-1] != "0":
                return False
            return all(
                session.get(
                    f"{url}/api/v1/runs/{uuid}/files/preview",
                    params={"path": "samples/image", "kind": "thumbnail"},
                    timeout=30,
                ).status_code
                == 200
                for uuid, _ in runs
            )

        wait_for(drained, timeout=600, what="every roll-up and preview", interval=2)
        drain = time.time() - acked
        lost, duplicated = check_points(url, dep.token, runs, steps, args.series)
        same = replica_matches(dep)
        answers = Counter(
            line.split()[2] for line in (root / "lb" / "access.log").read_text().splitlines() if len(line.split()) >= 3
        )
        print()
        print(f"points logged        {args.points:,} over {args.runs} runs × {args.series} series")
        print(
            f"ingest through lb    {rate:,.0f} points/s (first append to last acknowledgement, paced over {args.duration:.0f} s)"
        )
        print(f"time to drain        {drain:.1f} s (last acknowledgement to every roll-up and preview done)")
        print(f"sweep found          {swept[0]} series without roll-ups, {swept[1]} blobs unprocessed after the faults")
        print(f"lost points          {lost}")
        print(f"duplicated points    {duplicated}")
        print(f"replica == primary   {'yes' if same else 'NO'} (points per series: count and sum)")
        print(f"balancer answers     {dict(sorted(answers.items()))}")
        status = 0 if (lost, duplicated, same) == (0, 0, True) else 1
    finally:
        if args.keep_logs:
            target = Path(args.keep_logs)
            target.mkdir(parents=True, exist_ok=True)
            for path in [*root.glob("*.log"), root / "lb" / "access.log", root / "lb" / "error.log"]:
                if path.exists():
                    shutil.copy(path, target / path.name)
        dep.stop_all()
        net_down()
        shutil.rmtree(root, ignore_errors=True)
        log("cleaned up: processes, namespaces, links, bridge and files removed")
    return status


if __name__ == "__main__":
    sys.exit(main())
