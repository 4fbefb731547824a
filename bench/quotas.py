"""Quotas under concurrency: request-rate buckets and the storage quota against gunicorn + PostgreSQL.

    bench/quotas.py [--store redis|db|both] [--clients 20] [--seconds 20] [--workers 4]

Starts gunicorn (``--workers`` processes, 2 threads each) on 127.0.0.1 against its own PostgreSQL
database ``runstore_quotabench`` (dropped and created, migrated), with one user, a workspace
``bench`` and ``--clients`` API tokens bound to it. Then, for each bucket store (Redis from
``RUNSTORE_TEST_REDIS_URL`` / ``BENCH_REDIS_URL``, and the database):

1. per-token rate: every client (a thread with its own token) sends ``GET /api/v1/workspaces/``
   (a cheap request) as fast as it can for ``--seconds``, with ``RUNSTORE_QUOTA_REQUESTS_PER_SECOND`` =
   ``--rate`` and ``RUNSTORE_QUOTA_BURST`` = ``--burst``. Per token: accepted requests per second
   after the first burst vs the rate, and the most accepted in any window of W seconds (by the
   time each response arrived) vs ``rate * W + burst``;
2. workspace rate: the same 20 clients with generous per-token buckets, the workspace limited to
   ``--workspace-rate`` (its burst scales as a token's: rate x burst/rate of the defaults); the
   same numbers summed over all tokens against the workspace's bucket.

Then (once, on the last store) the storage quota: the workspace gets ``--storage-batches`` batches'
worth of bytes, every client sends batches of ``--points`` float points to its own run until one is
refused (403 ``quota_exceeded``); then usage is recounted exactly (``runs.usage.refresh_usage``)
and compared with the limit: it may pass it by at most one batch.

Prints medians over the tokens and the worst case; raw numbers go to ``bench/results/quotas.json``.
Uses this checkout as it is (``--source worktree`` of the other benchmarks).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    PYTHON,
    REPO,
    free_port,
    log,
    median,
    pg_drop,
    pg_recreate,
    pg_url,
    save_result,
    stop_process,
    wait_http,
)

DB = "runstore_quotabench"
WINDOWS = (1.0, 2.0, 5.0)
SECRET_KEY = uuid.uuid4().hex * 2
# A cheap endpoint, so the clients can send faster than their buckets allow; the tokens are bound to
# the workspace, so every request of theirs also counts against the workspace's bucket.
URL = "/api/v1/workspaces/"

SETUP = """
from django.contrib.auth.models import User
from projects import services
user = User.objects.create_user("loadtester", password="x")
ws = services.create_workspace(user, "bench", "Bench")
services.create_project(user, ws, "quota")
for i in range({clients}):
    print("TOKEN", services.issue_token(user, name=f"client{{i}}", workspace=ws)[1])
"""

SET_QUOTA = """
from projects import services
from projects.models import Workspace
services.set_quota(Workspace.objects.get(slug="bench"), by=None, **{limits!r})
"""

RECOUNT = """
import json
from runs.usage import refresh_usage
from projects.models import ProjectUsage, Workspace, WorkspaceUsage
from runs.models import Attribute
refresh_usage()
ws = Workspace.objects.get(slug="bench")
usage = WorkspaceUsage.objects.get(workspace=ws)
points = sum(Attribute.objects.filter(project__workspace=ws, path="train/loss").values_list("count", flat=True))
print(json.dumps({"bytes": usage.bytes, "admitted": usage.admitted, "exact": ProjectUsage.workspace_total(ws.pk),
                  "points": points}))
"""


class Server:
    def __init__(self, args, store: str, redis_url: str):
        self.tmp = Path(tempfile.mkdtemp(prefix="runstore-quotabench-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.env = {
            **os.environ,
            "RUNSTORE_VAR_DIR": str(self.tmp / "var"),
            "DATABASE_URL": pg_url(DB),
            "DJANGO_SETTINGS_MODULE": "tracker.settings",
            "DEBUG": "false",
            "SECRET_KEY": SECRET_KEY,  # one for every process, so the tokens made at setup are valid
            "CELERY_BROKER_URL": "filesystem://",
            "RUNSTORE_RATE_LIMIT_REDIS_URL": redis_url if store == "redis" else "",
            "RUNSTORE_RATE_LIMIT_KEY_PREFIX": f"runstore-quotabench:{uuid.uuid4().hex}:",
            "RUNSTORE_QUOTA_REQUESTS_PER_SECOND": str(args.rate),
            "RUNSTORE_QUOTA_BURST": str(args.burst),
            "LOG_LEVEL": "WARNING",
        }
        self.proc = None

    def manage(self, *argv: str) -> str:
        done = subprocess.run([PYTHON, "manage.py", *argv], cwd=REPO, env=self.env, text=True, capture_output=True)
        if done.returncode:
            raise RuntimeError(f"manage.py {argv[0]} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "-c", code)

    def start(self) -> None:
        self.log = open(self.tmp / "gunicorn.log", "w")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "tracker.wsgi:application", "-b", f"127.0.0.1:{self.port}"]
            + ["-w", str(self.args.workers), "--threads", "2", "--timeout", "120", "--log-level", "warning"],
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_http(self.url + "/healthz", proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def hammer(url: str, token: str, seconds: float, start: threading.Barrier) -> dict:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    accepted, refused, other, retry_after, headers_ok = [], 0, 0, [], True
    start.wait()
    t0 = time.monotonic()
    while (now := time.monotonic()) - t0 < seconds:
        response = session.get(url, timeout=30)
        if response.status_code == 200:
            accepted.append(time.monotonic() - t0)
            headers_ok &= "RateLimit-Remaining" in response.headers
        elif response.status_code == 429:
            refused += 1
            retry_after.append(int(response.headers["Retry-After"]))
            headers_ok &= response.json()["error"]["code"] == "rate_limited"
        else:
            other += 1
            if other == 1 and response.status_code != 200:
                log(f"unexpected {response.status_code}: {response.text[:300]}")
    del now
    return {"accepted": accepted, "refused": refused, "other": other, "retry_after": retry_after, "ok": headers_ok}


def max_in_window(times: list[float], window: float) -> int:
    best = 0
    for i, t in enumerate(times):
        best = max(best, bisect.bisect_right(times, t + window) - i)
    return best


def run_clients(url: str, tokens: list[str], seconds: float) -> list[dict]:
    results: list[dict | None] = [None] * len(tokens)
    barrier = threading.Barrier(len(tokens))

    def work(i):
        results[i] = hammer(url, tokens[i], seconds, barrier)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(tokens))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results  # type: ignore[return-value]


def rate_phase(server: Server, tokens: list[str], seconds: float, rate: float, burst: int, label: str) -> dict:
    results = run_clients(server.url + URL, tokens, seconds)
    per_token = []
    for r in results:
        times = r["accepted"]
        per_token.append(
            {
                "accepted": len(times),
                "refused": r["refused"],
                "other": r["other"],
                # from the first answer on: under load the first requests wait seconds for a worker
                "rate_after_burst": max(0, len(times) - burst) / (seconds - times[0]) if times else 0.0,
                "attempts_per_second": (len(times) + r["refused"] + r["other"]) / seconds,
                "windows": {w: max_in_window(times, w) for w in WINDOWS},
            }
        )
    summary = {
        "label": label,
        "rate": rate,
        "burst": burst,
        "seconds": seconds,
        "requests": sum(t["accepted"] + t["refused"] + t["other"] for t in per_token),
        "accepted": sum(t["accepted"] for t in per_token),
        "refused": sum(t["refused"] for t in per_token),
        "other_statuses": sum(t["other"] for t in per_token),
        "headers_ok": all(r["ok"] for r in results),
        "median_retry_after": median([x for r in results for x in r["retry_after"]]),
        "median_attempts_per_second": median([t["attempts_per_second"] for t in per_token]),
        "median_rate_after_burst": median([t["rate_after_burst"] for t in per_token]),
        "max_rate_after_burst": max(t["rate_after_burst"] for t in per_token),
        "windows": {
            w: {
                "median": median([t["windows"][w] for t in per_token]),
                "max": max(t["windows"][w] for t in per_token),
                "bound": rate * w + burst,
            }
            for w in WINDOWS
        },
        "per_token": per_token,
    }
    return summary


def workspace_phase(server: Server, tokens: list[str], seconds: float, ws_rate: float, ws_burst: int) -> dict:
    results = run_clients(server.url + URL, tokens, seconds)
    times = sorted(t for r in results for t in r["accepted"])
    return {
        "label": "workspace",
        "rate": ws_rate,
        "burst": ws_burst,
        "seconds": seconds,
        "requests": sum(len(r["accepted"]) + r["refused"] + r["other"] for r in results),
        "accepted": len(times),
        "refused": sum(r["refused"] for r in results),
        "other_statuses": sum(r["other"] for r in results),
        "rate_after_burst": max(0, len(times) - ws_burst) / seconds,
        "windows": {w: {"max": max_in_window(times, w), "bound": ws_rate * w + ws_burst} for w in WINDOWS},
        "median_tokens_accepted": median([len(r["accepted"]) for r in results]),
    }


def storage_phase(server: Server, tokens: list[str], points: int, batches: int) -> dict:
    import requests

    batch_bytes = 32 * points
    limit = batch_bytes * batches + batch_bytes // 2  # not a whole number of batches: the last one passes it
    # Request rates out of the way: this measures the storage quota alone.
    server.shell(SET_QUOTA.format(limits={"storage_bytes": limit, "requests_per_second": 1000, "burst": 1000}))
    barrier = threading.Barrier(len(tokens))
    outcome: list[dict | None] = [None] * len(tokens)

    def work(i):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {tokens[i]}"
        run = session.post(server.url + "/api/v1/runs/", json={"project": "bench/quota", "name": f"c{i}"}).json()
        accepted, latencies, refusal = 0, [], None
        barrier.wait()
        for seq in range(10_000):
            body = {
                "stream": "s",
                "seq": seq,
                "ops": [
                    {
                        "op": "append",
                        "path": "train/loss",
                        "values": [0.5] * points,
                        "steps": list(range(seq * points, (seq + 1) * points)),
                    }
                ],
            }
            t = time.monotonic()
            response = session.post(server.url + f"/api/v1/runs/{run['uuid']}/batch", json=body, timeout=60)
            latencies.append(time.monotonic() - t)
            if response.status_code == 200:
                accepted += 1
            elif response.status_code == 429:
                time.sleep(int(response.headers.get("Retry-After", "1")))
            else:
                refusal = {"status": response.status_code, **response.json()["error"]}
                break
        outcome[i] = {"accepted": accepted, "refusal": refusal, "median_latency": median(latencies)}

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(tokens))]
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - t0
    counted = json.loads(server.shell(RECOUNT).strip().splitlines()[-1])
    accepted = sum(o["accepted"] for o in outcome)
    refusals = [o["refusal"] for o in outcome if o["refusal"]]
    return {
        "limit": limit,
        "batch_bytes": batch_bytes,
        "points_per_batch": points,
        "accepted_batches": accepted,
        "accepted_bytes": accepted * batch_bytes,
        "recount": counted,
        "over_limit": counted["exact"] - limit,
        "within_one_batch": counted["exact"] - limit <= batch_bytes,
        "refused_clients": len(refusals),
        "refusal_codes": sorted({r.get("code") for r in refusals}),
        "sample_refusal": refusals[0] if refusals else None,
        "median_batch_latency_ms": 1000 * median([o["median_latency"] for o in outcome]),
        "seconds": elapsed,
    }


def show_rate(s: dict) -> None:
    print(
        f"  {s['label']}: {s['requests']} requests in {s['seconds']:.0f} s, {s['accepted']} accepted, "
        f"{s['refused']} refused (429), {s['other_statuses']} other; Retry-After median {s['median_retry_after']:g} s; "
        f"headers present: {s['headers_ok']}"
    )
    print(
        f"  accepted/s per token after the burst: median {s['median_rate_after_burst']:.2f}, "
        f"max {s['max_rate_after_burst']:.2f} (configured {s['rate']:g}/s, burst {s['burst']}); "
        f"requests sent per token per second: median {s['median_attempts_per_second']:.2f}"
    )
    for w, v in s["windows"].items():
        verdict = "ok" if v["max"] <= v["bound"] else "OVER"
        print(
            f"  most accepted in any {w:g} s window: median {v['median']}, max {v['max']} <= {v['bound']:g} {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["redis", "db", "both"], default="both")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.2, help="per-token requests per second")
    parser.add_argument("--burst", type=int, default=2, help="per-token burst")
    parser.add_argument("--workspace-rate", type=float, default=4.0)
    parser.add_argument("--points", type=int, default=1000, help="float points per batch")
    parser.add_argument("--storage-batches", type=int, default=300, help="the storage quota, in batches")
    args = parser.parse_args()
    redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("RUNSTORE_TEST_REDIS_URL", "")
    stores = ["redis", "db"] if args.store == "both" else [args.store]
    if "redis" in stores and not redis_url:
        log("no RUNSTORE_TEST_REDIS_URL/BENCH_REDIS_URL: measuring the database store only")
        stores = ["db"]
    results: dict = {"clients": args.clients, "workers": args.workers, "load_before": os.getloadavg()}
    pg_recreate(DB)
    try:
        first = Server(args, stores[0], redis_url)
        first.manage("migrate", "--noinput")
        out = first.shell(SETUP.format(clients=args.clients))
        tokens = [line.split()[1] for line in out.splitlines() if line.startswith("TOKEN ")]
        assert len(tokens) == args.clients, out
        first.stop()
        for index, store in enumerate(stores):
            server = Server(args, store, redis_url)
            server.shell(SET_QUOTA.format(limits={"workspace_requests_per_second": None}))
            server.start()
            try:
                log(f"{store}: per-token buckets, {args.clients} clients x {args.seconds:g} s")
                token_phase = rate_phase(server, tokens, args.seconds, args.rate, args.burst, "per token")
                ws_burst = max(1, int(-(-args.workspace_rate * 200 // 100)))
                server.shell(SET_QUOTA.format(limits={"requests_per_second": 100, "burst": 200}))
                server.shell(SET_QUOTA.format(limits={"workspace_requests_per_second": args.workspace_rate}))
                time.sleep(2.5)  # the per-token buckets refill to their new burst
                log(f"{store}: workspace bucket {args.workspace_rate:g}/s")
                ws_phase = workspace_phase(server, tokens, args.seconds, args.workspace_rate, ws_burst)
                server.shell(
                    SET_QUOTA.format(
                        limits={"requests_per_second": None, "burst": None, "workspace_requests_per_second": None}
                    )
                )
                results[store] = {"token": token_phase, "workspace": ws_phase}
                print(f"\n== request rates, {store} bucket store ({args.clients} clients, gunicorn -w {args.workers})")
                show_rate(token_phase)
                ws = ws_phase
                print(
                    f"  workspace bucket: {ws['requests']} requests, {ws['accepted']} accepted, {ws['refused']} refused; "
                    f"accepted/s after the burst {ws['rate_after_burst']:.2f} (configured {ws['rate']:g}/s, "
                    f"burst {ws['burst']}), median per token {ws['median_tokens_accepted']}"
                )
                for w, v in ws["windows"].items():
                    verdict = "ok" if v["max"] <= v["bound"] else "OVER"
                    print(f"  workspace, most accepted in any {w:g} s window: {v['max']} <= {v['bound']:g} {verdict}")
                if index == len(stores) - 1:
                    log(f"storage quota: {args.clients} clients send {args.points}-point batches until refused")
                    storage = storage_phase(server, tokens, args.points, args.storage_batches)
                    results["storage"] = storage
                    c = storage["recount"]
                    print(f"\n== storage quota ({args.clients} clients, {store} bucket store)")
                    print(
                        f"  limit {storage['limit']} bytes; {storage['accepted_batches']} batches of "
                        f"{storage['batch_bytes']} bytes accepted in {storage['seconds']:.1f} s "
                        f"(median batch latency {storage['median_batch_latency_ms']:.1f} ms); "
                        f"{storage['refused_clients']} clients refused with {storage['refusal_codes']}"
                    )
                    print(
                        f"  exact usage after recount {c['exact']} bytes ({c['points']} points; admitted left "
                        f"{c['admitted']}); over the limit by {storage['over_limit']} bytes = "
                        f"{storage['over_limit'] / storage['batch_bytes']:.2f} batches; within one batch: "
                        f"{storage['within_one_batch']}"
                    )
            finally:
                server.stop()
    finally:
        pg_drop(DB)
    results["load_after"] = os.getloadavg()
    print(f"\nload average before {results['load_before'][0]:.1f}, after {results['load_after'][0]:.1f}")
    log(f"raw results: {save_result('quotas', results)}")


if __name__ == "__main__":
    main()
