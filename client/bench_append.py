"""Benchmarks of the client.

    python bench_append.py [--server URL TOKEN PROJECT]  # calling-thread cost of run["x"].append(v)
    python bench_append.py --e2e URL TOKEN PROJECT   # 1,000,000 points until acknowledged: points/s, peak RSS
        [--wire packed|lists|both --rounds N]        # packed float columns, per-point lists, or both alternating

The hot-path number is the median, over chunks of 10,000 calls, of the mean
nanoseconds per call in the chunk (time.perf_counter_ns around each chunk; it
includes the time the background threads hold the GIL; time.thread_time_ns
gives the calling thread's own CPU time, which other load does not inflate,
and time.process_time_ns that of all the process's threads (the writer's
and sender's share; wall time beyond it is other processes' load);
the mean over the whole loop counts every burst of background work),
for 1,000,000 calls in offline mode (the disk queue alone, no server) or,
with --server, in async mode (the sender sends to that server meanwhile).
bench/client_compare.py measures the same loop next to MLflow, W&B and Aim.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import runstore
from runstore._internal import writer

CAPTURE_OFF = {
    "capture_stdout": False,
    "capture_stderr": False,
    "capture_hardware_metrics": False,
    "capture_source": False,
    "capture_environment": False,
}


def peak_rss_mib() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


class RssSampler:
    """Peak RSS over an interval (psutil, every 10 ms), for the e2e part only."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self.peak = self.process.memory_info().rss
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def hot_path(calls: int, chunk: int, server: list[str] | None) -> None:
    with tempfile.TemporaryDirectory() as home:
        os.environ["RUNSTORE_HOME"] = home
        if server:
            # async mode: the writer and the sender threads run (and compete for the GIL) meanwhile
            url, token, project = server
            run = runstore.init_run(
                project=project, api_token=token, url=url, mode="async", name="bench-hot", **CAPTURE_OFF
            )
        else:
            # same calling-thread code as async (a deque append); only the sender thread is absent
            run = runstore.init_run(project="bench/hot", mode="offline", **CAPTURE_OFF)
        handler_loss = run["train/loss"]
        del handler_loss
        means = []
        cpu_means = []
        process_means = []
        value = 0.5
        loop_start = time.perf_counter_ns()
        for _ in range(calls // chunk):
            process_start = time.process_time_ns()
            cpu_start = time.thread_time_ns()
            start = time.perf_counter_ns()
            for _ in range(chunk):
                run["train/loss"].append(value)
            means.append((time.perf_counter_ns() - start) / chunk)
            cpu_means.append((time.thread_time_ns() - cpu_start) / chunk)
            process_means.append((time.process_time_ns() - process_start) / chunk)
        loop_ns = time.perf_counter_ns() - loop_start
        flush_start = time.perf_counter()
        run.flush()
        flush_s = time.perf_counter() - flush_start
        run.stop()
        print(
            f"append, {run.mode} mode, {calls:,} calls: median {statistics.median(means) / 1000:.3f} µs/call "
            f"(p90 of chunk means {sorted(means)[int(len(means) * 0.9)] / 1000:.3f} µs; "
            f"mean over the whole loop {loop_ns / (len(means) * chunk) / 1000:.3f} µs; "
            f"calling thread's own CPU time: median {statistics.median(cpu_means) / 1000:.3f} µs/call, "
            f"all threads' CPU time: median {statistics.median(process_means) / 1000:.3f} µs/call); "
            f"flush to disk afterwards: {flush_s:.2f} s; peak RSS {peak_rss_mib():.0f} MiB"
        )


def e2e(url: str, token: str, project: str, points: int, wire: str = "packed") -> float:
    """One run: ``points`` appends, then wait until all are acknowledged; returns points/s.
    ``wire``: float appends with packed columns, or per-point lists (the older wire form)."""
    writer.PACKED_FLOATS = wire == "packed"
    with tempfile.TemporaryDirectory() as home:
        os.environ["RUNSTORE_HOME"] = home
        run = runstore.init_run(
            project=project, api_token=token, url=url, mode="async", name=f"bench-e2e-{wire}", **CAPTURE_OFF
        )
        with RssSampler() as rss:
            start = time.perf_counter()
            for i in range(points):
                run["train/loss"].append(i * 1e-6)
            appended = time.perf_counter() - start
            ok = run.wait(timeout=3600)
            total = time.perf_counter() - start
        run.stop()
        status = run.status()
        print(
            f"e2e ({wire} columns): {points:,} points appended in {appended:.2f} s, all acknowledged ({ok}) after "
            f"{total:.2f} s: {points / total:,.0f} points/s; peak RSS during the run {rss.peak / 2**20:.0f} MiB "
            f"(process peak {peak_rss_mib():.0f} MiB); errors {status['errors']}",
            flush=True,
        )
    return points / total


def e2e_rounds(url: str, token: str, project: str, points: int, wires: list[str], rounds: int) -> None:
    """``rounds`` of each wire format, alternating (a, b, b, a, ...); the medians side by side."""
    rates: dict[str, list[float]] = {w: [] for w in wires}
    for r in range(rounds):
        for wire in wires if r % 2 == 0 else wires[::-1]:
            rates[wire].append(e2e(url, token, project, points, wire))
    load = os.getloadavg()
    for wire, got in rates.items():
        print(
            f"e2e median ({wire} columns, {len(got)} rounds): {statistics.median(got):,.0f} points/s "
            f"({', '.join(f'{r:,.0f}' for r in got)}); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--e2e", nargs=3, metavar=("URL", "TOKEN", "PROJECT"))
    parser.add_argument(
        "--server", nargs=3, metavar=("URL", "TOKEN", "PROJECT"), help="hot path in async mode against a server"
    )
    parser.add_argument(
        "--wire",
        choices=["packed", "lists", "both"],
        default="packed",
        help="float appends with packed columns (default), per-point lists, or both side by side",
    )
    parser.add_argument("--rounds", type=int, default=1, help="--e2e: runs per wire format, alternating")
    args = parser.parse_args()
    if args.e2e:
        wires = ["lists", "packed"] if args.wire == "both" else [args.wire]
        e2e_rounds(*args.e2e, points=args.calls, wires=wires, rounds=args.rounds)
    else:
        for wire in ["lists", "packed"] if args.wire == "both" else [args.wire]:
            writer.PACKED_FLOATS = wire == "packed"
            print(f"{wire} columns:", end=" ")
            hot_path(args.calls, args.chunk, args.server)


if __name__ == "__main__":
    main()
