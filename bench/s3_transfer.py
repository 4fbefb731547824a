"""Big-file transfer benchmark through the S3 path (SeaweedFS), measuring the web process.

A gunicorn web process (1 worker, 2 threads) serves Runstore with
RUNSTORE_STORAGE=s3 on a scratch SQLite database. For a file of --size-mb
(default 1024) of random bytes, and for a small file for comparison:

* direct:  POST uploads/direct -> the client PUTs presigned parts straight to
  S3 -> POST .../complete (the server reads the object back to verify its
  SHA-256) -> GET files/url -> the client GETs the presigned URL.
* proxied: POST uploads (multipart form through the web process, which streams
  it to a temporary file and on to S3 in parts) -> GET files/download
  (streamed back from S3 through the web process).

Printed: MB/s for each leg, and the peak RSS of the web process (master and
worker, sampled every 20 ms with psutil) during each. The target: RSS does not
grow with file size.

    source var/services.env && .venv/bin/python bench/s3_transfer.py [--size-mb 1024]
"""

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 8 * 1024 * 1024


def log(msg):
    print(msg, flush=True)


class RssSampler:
    def __init__(self, pid):
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self):
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total = max(total, p.memory_info().rss)  # the biggest single process (the worker)
            except psutil.NoSuchProcess:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.02)

    def __enter__(self):
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            data = os.urandom(min(CHUNK, left))
            digest.update(data)
            out.write(data)
            left -= len(data)
    return digest.hexdigest()


def file_parts(path: Path, offset: int, length: int):
    with open(path, "rb") as src:
        src.seek(offset)
        left = length
        while left:
            data = src.read(min(CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data


class _Body:
    """A streamed request body with a known length (requests sends it without chunking)."""

    def __init__(self, path, offset, length):
        self.path, self.offset, self.length = path, offset, length

    def __len__(self):
        return self.length

    def __iter__(self):
        return file_parts(self.path, self.offset, self.length)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(env):
    code = (
        "from django.contrib.auth.models import User\n"
        "from accounts.models import ApiToken\n"
        "from projects import services as ps\n"
        "from runs import services as rs\n"
        "u = User.objects.create_user('bench', password='bench-pw')\n"
        "ws = u.personal_workspace\n"
        "p = ps.create_project(u, ws, 'files', key='FB')\n"
        "r, _ = rs.create_run(u, p)\n"
        "print(ApiToken.issue(u, name='bench')[1], r.uuid)\n"
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return out[-2], out[-1]


def direct(session, base, run, path, size, sha):
    t0 = time.perf_counter()
    started = session.post(
        f"{base}/runs/{run}/uploads/direct", json={"sha256": sha, "size": size, "name": path.name}
    ).json()
    parts = []
    if "parts" in started:
        for part in started["parts"]:
            offset = (part["part_number"] - 1) * started["part_size"]
            length = min(started["part_size"], size - offset)
            answer = requests.put(part["url"], data=_Body(path, offset, length), timeout=600)
            answer.raise_for_status()
            parts.append({"part_number": part["part_number"], "etag": answer.headers["ETag"]})
    else:
        requests.put(started["url"], data=_Body(path, 0, size), timeout=600).raise_for_status()
    t1 = time.perf_counter()
    done = session.post(
        f"{base}/runs/{run}/uploads/direct/{started['upload_id']}/complete", json={"parts": parts} if parts else {}
    )
    done.raise_for_status()
    t2 = time.perf_counter()
    session.post(
        f"{base}/runs/{run}/batch",
        json={
            "stream": uuid.uuid4().hex,
            "seq": 0,
            "ops": [{"op": "upload", "path": f"direct/{path.name}", "sha256": sha}],
        },
    ).raise_for_status()
    link = session.get(f"{base}/runs/{run}/files/url", params={"path": f"direct/{path.name}"}).json()
    t3 = time.perf_counter()
    got = _download(requests.get(link["url"], stream=True, timeout=600))
    t4 = time.perf_counter()
    assert got == (sha, size), "direct download differs"
    return {"put_s": t1 - t0, "verify_s": t2 - t1, "get_s": t4 - t3}


def _download(response):
    response.raise_for_status()
    digest, n = hashlib.sha256(), 0
    for chunk in response.iter_content(CHUNK):
        digest.update(chunk)
        n += len(chunk)
    return digest.hexdigest(), n


def proxied(session, base, run, path, size, sha):
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    class Body:
        def __len__(self):
            return len(head) + size + len(tail)

        def __iter__(self):
            yield head
            yield from file_parts(path, 0, size)
            yield tail

    t0 = time.perf_counter()
    answer = session.post(
        f"{base}/runs/{run}/uploads",
        data=Body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=1200,
    )
    answer.raise_for_status()
    t1 = time.perf_counter()
    session.post(
        f"{base}/runs/{run}/batch",
        json={
            "stream": uuid.uuid4().hex,
            "seq": 0,
            "ops": [{"op": "upload", "path": f"proxied/{path.name}", "sha256": sha}],
        },
    ).raise_for_status()
    t2 = time.perf_counter()
    got = _download(
        session.get(
            f"{base}/runs/{run}/files/download", params={"path": f"proxied/{path.name}"}, stream=True, timeout=1200
        )
    )
    t3 = time.perf_counter()
    assert got == (sha, size), "proxied download differs"
    return {"upload_s": t1 - t0, "download_s": t3 - t2}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--small-mb", type=int, default=50)
    args = parser.parse_args()
    for name in (
        "RUNSTORE_TEST_S3_ENDPOINT",
        "RUNSTORE_TEST_S3_BUCKET",
        "RUNSTORE_TEST_S3_ACCESS_KEY",
        "RUNSTORE_TEST_S3_SECRET_KEY",
    ):
        if not os.environ.get(name):
            sys.exit(f"{name} is not set: source var/services.env (make services starts SeaweedFS)")
    scratch = Path(tempfile.mkdtemp(prefix="rs-s3bench-"))
    env = {
        **os.environ,
        "RUNSTORE_VAR_DIR": str(scratch / "var"),
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "RUNSTORE_STORAGE": "s3",
        "RUNSTORE_S3_ENDPOINT_URL": os.environ["RUNSTORE_TEST_S3_ENDPOINT"],
        "RUNSTORE_S3_BUCKET": os.environ["RUNSTORE_TEST_S3_BUCKET"],
        "RUNSTORE_S3_ACCESS_KEY": os.environ["RUNSTORE_TEST_S3_ACCESS_KEY"],
        "RUNSTORE_S3_SECRET_KEY": os.environ["RUNSTORE_TEST_S3_SECRET_KEY"],
        "RUNSTORE_UPLOAD_TEMP_DIR": str(scratch),
        "RUNSTORE_TIMESCALEDB": "off",
        "LOG_LEVEL": "WARNING",
        "CELERY_TASK_ALWAYS_EAGER": "0",
    }
    token, run = setup(env)
    port = free_port()
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "tracker.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "2",
            "--timeout",
            "1200",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    results = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, "web process did not start"
                time.sleep(0.2)
        for label, mb in (("small", args.small_mb), ("big", args.size_mb)):
            size = mb * 1024 * 1024
            path = scratch / f"{label}.bin"
            sha = make_file(path, size)
            with RssSampler(server.pid) as rss_direct:
                d = direct(session, base, run, path, size, sha)
            with RssSampler(server.pid) as rss_proxied:
                p = proxied(session, base, run, path, size, sha)
            path.unlink()
            mbs = lambda seconds, mb=mb: mb / seconds if seconds else float("inf")  # noqa: E731
            results[label] = {
                "size_mb": mb,
                "direct": {
                    "put_mb_s": mbs(d["put_s"]),
                    "verify_mb_s": mbs(d["verify_s"]),
                    "get_mb_s": mbs(d["get_s"]),
                    "web_peak_rss_mb": rss_direct.peak / 2**20,
                },
                "proxied": {
                    "upload_mb_s": mbs(p["upload_s"]),
                    "download_mb_s": mbs(p["download_s"]),
                    "web_peak_rss_mb": rss_proxied.peak / 2**20,
                },
            }
            r = results[label]
            log(
                f"{mb:5d} MB direct : PUT to S3 {r['direct']['put_mb_s']:6.1f} MB/s, server verify {r['direct']['verify_mb_s']:6.1f} MB/s, "
                f"GET presigned {r['direct']['get_mb_s']:6.1f} MB/s; web process peak RSS {r['direct']['web_peak_rss_mb']:.0f} MB"
            )
            log(
                f"{mb:5d} MB proxied: upload {r['proxied']['upload_mb_s']:6.1f} MB/s, download {r['proxied']['download_mb_s']:6.1f} MB/s; "
                f"web process peak RSS {r['proxied']['web_peak_rss_mb']:.0f} MB"
            )
    finally:
        server.terminate()
        server.wait(30)
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
