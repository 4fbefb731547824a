"""Calling-thread cost of logging one float metric point: Runstore next to MLflow, W&B and Aim.

    .venv/bin/python bench/client_compare.py [--calls 1000000] [--budget 15] [--tools runstore,mlflow,wandb,aim]
                                             [--mlflow-async-calls 2000] [--source HEAD|worktree|REV]
                                             [--server-workers 2] [--json]

One invocation measures every tool one after the other, each in a fresh
process, and prints one table. The loop is the same for every tool: the
tool's call for one float point in a plain ``for`` loop, timed in chunks
with ``time.perf_counter_ns`` (median over chunks of the mean ns per call,
as ``client/bench_append.py`` does; it includes the time the tool's
background threads hold the GIL) and ``time.thread_time_ns`` (the calling
thread's own CPU time, which other load does not inflate). "mean" is the
whole loop's wall time / calls (bursts of background work included).

* ``runstore`` ``run["loss"].append(v)`` (this checkout's ``client/``, run
  with ``.venv``): ``async`` against a throwaway Runstore server (SQLite,
  gunicorn ``-w 2 --threads 2`` like MLflow's ``--workers 2``, server code of
  ``--source``, no Celery worker; on a 2-core machine its workers ingesting
  the points compete with the client for the cores) and ``offline``
  (disk queue only), ``--calls`` calls (default 1,000,000) in chunks of 10,000;
  afterwards ``run.flush()`` (everything fsync-ed in the disk queue) and, in
  async mode, ``run.wait()`` (everything acknowledged by the server);
* ``mlflow`` ``mlflow.log_metric("loss", v, step=i)`` against ``mlflow
  server`` (SQLite backend store, 127.0.0.1), synchronous (each call returns
  after the server stored the point), ``synchronous=False`` (MLflow's async
  logging queue, defaults) and ``async+buf`` (the same with
  ``MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS=1``, which batches the queue into
  requests of up to 1,000 points; 10x the calls), then
  ``mlflow.flush_async_logging()`` (acknowledged);
  async capped at ``--mlflow-async-calls`` (default 2,000): with MLflow's
  defaults every queued point goes to the server as its own request (tens
  of ms each here), and the flush waits for all of them;
* ``wandb`` ``run.log({"loss": v})`` in offline mode, then ``run.finish()``
  (written to the local ``.wandb`` file by wandb-core);
* ``aim`` ``run.track(v, name="loss")`` into a local repository, then
  ``run.close()``.

Tools other than Runstore get as many calls as fit in ``--budget`` seconds
(estimated from a pilot of a few calls; at least 200, at most ``--calls``),
in chunks of 1% (at least 10 calls). System metrics, console capture and code/git capture are
switched off in every tool. MLflow, W&B and Aim run in their own virtualenvs
``bench/.venv-<tool>``, created (with uv when ``.venv/bin/uv`` or ``uv`` is
there) from the pinned ``bench/requirements-<tool>.txt`` and re-created when
that file changes; a tool that cannot be installed or started is reported
with the reason and the others are still measured.

Results go to ``bench/results/client_compare.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, REPO, free_port, log, save_result, stop_process, wait_http  # noqa: E402

TOOLS = ("runstore", "mlflow", "wandb", "aim")
VENV_TOOLS = ("mlflow", "wandb", "aim")
RUNSTORE_CHUNK = 10_000
CHUNKS = 100
MIN_CALLS = 200
VALUE = 0.5


# --- timing (runs inside each tool's process) --------------------------------
def timed(loop: Callable[[int, int], None], calls: int, chunk: int) -> dict:
    """``loop(start, n)`` makes n calls; time ``calls // chunk`` chunks of ``chunk`` calls."""
    means, cpus = [], []
    start_all = time.perf_counter_ns()
    for c in range(calls // chunk):
        cpu = time.thread_time_ns()
        start = time.perf_counter_ns()
        loop(c * chunk, chunk)
        means.append((time.perf_counter_ns() - start) / chunk)
        cpus.append((time.thread_time_ns() - cpu) / chunk)
    total = time.perf_counter_ns() - start_all
    done = len(means) * chunk
    return {
        "calls": done,
        "chunk": chunk,
        "loop_s": total / 1e9,
        "median_us": statistics.median(means) / 1000,
        "p90_us": sorted(means)[int(len(means) * 0.9)] / 1000,
        "mean_us": total / done / 1000,
        "cpu_median_us": statistics.median(cpus) / 1000,
    }


def budgeted(loop: Callable[[int, int], None], budget: float, max_calls: int, cap: int | None = None) -> dict:
    """As many calls as fit in ``budget`` seconds (pilot-estimated), in ``CHUNKS`` chunks."""
    loop(0, 20)  # warm-up: first-call imports and connections
    pilot = 0
    start = time.perf_counter()
    while pilot < 1000 and time.perf_counter() - start < 0.5:
        loop(20 + pilot, 10)
        pilot += 10
    per_call = (time.perf_counter() - start) / pilot
    calls = int(min(max_calls, cap or max_calls, max(MIN_CALLS, budget / per_call)))
    chunk = max(10, calls // CHUNKS)
    result = timed(lambda s, n: loop(20 + pilot + s, n), chunk * (calls // chunk), chunk)
    result["pilot_us"] = per_call * 1e6
    return result


def emit(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


# --- runners (each in the tool's own interpreter) -----------------------------
def run_runstore(args: argparse.Namespace) -> None:
    import runstore

    capture_off = {
        "capture_stdout": False,
        "capture_stderr": False,
        "capture_hardware_metrics": False,
        "capture_source": False,
        "capture_environment": False,
    }
    with tempfile.TemporaryDirectory() as home:
        os.environ["RUNSTORE_HOME"] = home
        if args.mode == "async":
            run = runstore.init_run(
                project="bench/compare",
                api_token=args.token,
                url=args.url,
                mode="async",
                name="client-compare",
                **capture_off,
            )
        else:
            run = runstore.init_run(project="bench/compare", mode="offline", **capture_off)
        run["loss"]  # noqa: B018 - the handler exists before timing, as after a first call

        def loop(start: int, n: int) -> None:
            for _ in range(n):
                run["loss"].append(VALUE)

        result = timed(loop, args.calls, min(RUNSTORE_CHUNK, args.calls))
        t = time.perf_counter()
        flushed = run.flush()
        result["durable"] = {"flush() (fsync-ed on local disk)": time.perf_counter() - t}
        if args.mode == "async":
            t = time.perf_counter()
            acked = run.wait(timeout=3600)
            result["durable"]["wait() (acknowledged by the server)"] = time.perf_counter() - t
            result["ok"] = bool(flushed and acked)
        else:
            result["ok"] = bool(flushed)
        errors = run.status()["errors"]
        run.stop()
    import importlib.metadata

    emit(
        {
            **result,
            "tool": "runstore",
            "mode": args.mode,
            "version": importlib.metadata.version("runstore"),
            "errors": errors,
        }
    )


def run_mlflow(args: argparse.Namespace) -> None:
    import mlflow

    tmp = Path(tempfile.mkdtemp(prefix="compare-mlflow-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logf = open(tmp / "server.log", "w")  # noqa: SIM115 - closed below
    # The GenAI job runner starts ~7 processes that import all of MLflow; no part in metric logging.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp / 'mlflow.db'}",
            "--default-artifact-root",
            str(tmp / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=logf,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        wait_http(url + "/health", timeout=300, proc=proc)
        time.sleep(3)  # let the workers finish importing
        mlflow.set_tracking_uri(url)
        mlflow.set_experiment("client-compare")
        log_metric = mlflow.log_metric
        for mode in ("sync", "async", "async+buf"):
            with mlflow.start_run():
                if mode == "sync":

                    def loop(start: int, n: int) -> None:
                        for i in range(start, start + n):
                            log_metric("loss", VALUE, step=i)

                    result = budgeted(loop, args.budget, args.calls)
                    result["durable"] = {"each call (acknowledged on return)": 0.0}
                else:
                    if mode == "async+buf":
                        os.environ["MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"] = "1"

                    def loop(start: int, n: int) -> None:
                        for i in range(start, start + n):
                            log_metric("loss", VALUE, step=i, synchronous=False)

                    cap = args.mlflow_async_calls * (10 if mode == "async+buf" else 1)
                    result = budgeted(loop, args.budget, args.calls, cap=cap)
                    t = time.perf_counter()
                    mlflow.flush_async_logging()
                    result["durable"] = {"flush_async_logging() (acknowledged by the server)": time.perf_counter() - t}
            result["ok"] = True
            emit(
                {
                    **result,
                    "tool": "mlflow",
                    "mode": mode,
                    "version": mlflow.__version__,
                    "note": "tracking server, SQLite store",
                }
            )
    finally:
        stop_process(proc)
        logf.close()
        shutil.rmtree(tmp, ignore_errors=True)


def run_wandb(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="compare-wandb-"))
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        os.environ[name] = str(tmp)
    os.environ.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    import wandb

    try:
        run = wandb.init(
            project="client-compare",
            mode="offline",
            dir=str(tmp),
            settings=wandb.Settings(
                console="off", save_code=False, disable_git=True, x_disable_stats=True, x_disable_machine_info=True
            ),
        )
        run_log = run.log

        def loop(start: int, n: int) -> None:
            for _ in range(n):
                run_log({"loss": VALUE})

        result = budgeted(loop, args.budget, args.calls)
        t = time.perf_counter()
        run.finish()
        result["durable"] = {"finish() (written to the offline .wandb file)": time.perf_counter() - t}
        result["ok"] = True
        emit({**result, "tool": "wandb", "mode": "offline", "version": wandb.__version__})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_aim(args: argparse.Namespace) -> None:
    import aim
    from aim.__version__ import __version__

    tmp = Path(tempfile.mkdtemp(prefix="compare-aim-"))
    try:
        run = aim.Run(
            repo=str(tmp),
            experiment="client-compare",
            system_tracking_interval=None,
            log_system_params=False,
            capture_terminal_logs=False,
        )
        track = run.track

        def loop(start: int, n: int) -> None:
            for _ in range(n):
                track(VALUE, name="loss")

        result = budgeted(loop, args.budget, args.calls)
        t = time.perf_counter()
        run.close()
        result["durable"] = {"close() (local repository)": time.perf_counter() - t}
        result["ok"] = True
        emit({**result, "tool": "aim", "mode": "local repo", "version": __version__})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


RUNNERS = {"runstore": run_runstore, "mlflow": run_mlflow, "wandb": run_wandb, "aim": run_aim}


# --- orchestration (runs in .venv) --------------------------------------------
def uv() -> str | None:
    local = REPO / ".venv" / "bin" / "uv"
    return str(local) if local.exists() else shutil.which("uv")


def ensure_venv(tool: str) -> tuple[Path | None, str | None]:
    """bench/.venv-<tool> from bench/requirements-<tool>.txt: (python, None) or (None, why not)."""
    requirements = BENCH_DIR / f"requirements-{tool}.txt"
    venv = BENCH_DIR / f".venv-{tool}"
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    if python.exists() and stamp.exists() and stamp.read_bytes() == requirements.read_bytes():
        return python, None
    log(f"[{tool}] creating {venv.relative_to(REPO)} from {requirements.relative_to(REPO)}")
    shutil.rmtree(venv, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [[base, "-m", "venv", str(venv)]]
    if uv():
        steps.append([uv(), "pip", "install", "--quiet", "--python", str(python), "-r", str(requirements)])
    else:
        steps.append([str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)])
    for cmd in steps:
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if out.returncode != 0:
            lines = [line for line in (out.stderr or out.stdout).strip().splitlines() if line.strip()]
            why = " / ".join(lines[-6:]) or f"exit status {out.returncode}"
            return None, f"cannot install {requirements.name} on Python {platform.python_version()}: {why}"
    stamp.write_bytes(requirements.read_bytes())
    return python, None


def run_tool(python: Path, tool: str, extra: list[str], timeout: float) -> tuple[list[dict], str | None]:
    cmd = [str(python), str(Path(__file__).resolve()), "--runner", tool, *extra]
    with tempfile.TemporaryDirectory(prefix=f"compare-{tool}-") as cwd:  # tools that write into the working directory
        try:
            out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return [], f"did not finish within {timeout:.0f} s"
    results = [json.loads(line[7:]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0:
        lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
        return results, f"exit status {out.returncode}: " + " / ".join(lines[-4:])
    return results, None


def loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def measure(args: argparse.Namespace) -> dict:
    """Every tool in turn; returns {"meta", "results", "skipped"}."""
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "load_before": loadavg(),
    }
    results: list[dict] = []
    skipped: dict[str, str] = {}
    common = [
        "--calls",
        str(args.calls),
        "--budget",
        str(args.budget),
        "--mlflow-async-calls",
        str(args.mlflow_async_calls),
    ]
    for tool in args.tools:
        if tool == "runstore":
            from common import RunstoreServer, resolve_source

            with RunstoreServer(
                "sqlite", workers=args.server_workers, threads=2, source=resolve_source(args.source), celery=False
            ) as server:
                meta["runstore_server"] = f"{server.source}, SQLite, gunicorn -w {args.server_workers} --threads 2"
                for mode in ("async", "offline"):
                    log(f"[runstore/{mode}] {args.calls:,} calls")
                    extra = [*common, "--mode", mode, "--url", server.url, "--token", server.token]
                    found, error = run_tool(Path(sys.executable), tool, extra, timeout=3600)
                    results += found
                    if error:
                        skipped[f"runstore/{mode}"] = error
            continue
        python, error = ensure_venv(tool)
        if python is None:
            skipped[tool] = error or "?"
            log(f"[{tool}] not measured: {error}")
            continue
        log(f"[{tool}] measuring")
        found, error = run_tool(python, tool, common, timeout=3600)
        results += found
        if error:
            skipped[tool] = error
            log(f"[{tool}] {error}")
    meta["load_after"] = loadavg()
    return {"meta": meta, "results": results, "skipped": skipped}


def table(data: dict) -> str:
    meta, results = data["meta"], data["results"]
    ref = next((r for r in results if r["tool"] == "runstore" and r["mode"] == "async"), None)
    lines = [
        f"Client hot path: one float metric point per call, {meta['date']}, {meta['machine']}, "
        f"load avg {meta['load_before']} -> {meta['load_after']}",
        f"runstore server: {meta.get('runstore_server', '-')}",
        "",
        f"{'tool':9s} {'mode':11s} {'version':>8s} {'calls':>10s} {'median µs':>10s} {'p90 µs':>9s} {'mean µs':>9s} "
        f"{'CPU µs':>8s} {'x runstore':>10s}  until durable / acknowledged",
    ]
    for r in results:
        ratio = f"{r['median_us'] / ref['median_us']:,.1f}" if ref else "-"
        durable = "; ".join(f"{k}: {v:.2f} s" for k, v in r.get("durable", {}).items())
        lines.append(
            f"{r['tool']:9s} {r['mode']:11s} {r['version']:>8s} {r['calls']:>10,d} {r['median_us']:10.3f} "
            f"{r['p90_us']:9.3f} {r['mean_us']:9.3f} {r['cpu_median_us']:8.3f} {ratio:>10s}  {durable}"
        )
    for tool, why in data["skipped"].items():
        lines.append(f"{tool:9s} not measured: {why}")
    lines += [
        "",
        "median/p90 = over chunks, of the mean wall time per call in the chunk; mean = loop wall time / calls;",
        "CPU = the calling thread's own CPU time per call (median over chunks); x runstore = median / runstore async median.",
    ]
    if ref:
        target = "met" if ref["median_us"] <= 2.0 else "NOT met"
        lines.append(f"target runstore async <= 2 µs/call: {target} ({ref['median_us']:.3f} µs)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=1_000_000, help="Runstore's calls, and the most any tool gets")
    p.add_argument("--budget", type=float, default=15.0, help="seconds of calls for the slower tools")
    p.add_argument("--mlflow-async-calls", type=int, default=2_000)
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--server-workers", type=int, default=2, help="gunicorn workers of the Runstore server")
    p.add_argument("--source", default=None, help="Runstore server code: git revision (default HEAD) or 'worktree'")
    p.add_argument("--json", action="store_true", help="print the results as JSON after the table")
    p.add_argument("--runner", choices=TOOLS, help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--token", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.runner:
        RUNNERS[args.runner](args)
        return None
    args.tools = [t for t in args.tools.split(",") if t]
    unknown = set(args.tools) - set(TOOLS)
    if unknown:
        raise SystemExit(f"unknown tools: {', '.join(sorted(unknown))}")
    with contextlib.redirect_stdout(sys.stderr):
        data = measure(args)
    save_result("client_compare", data)
    print(table(data))
    if args.json:
        print(json.dumps(data, indent=2))
    return data


if __name__ == "__main__":
    main()
