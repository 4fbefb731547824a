"""The ``runstore`` command: sync, status, runs ls, download."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from ._internal.api import Api
from ._internal.progress import Progress
from ._internal.queue import QueueDir
from ._internal.sender import Abandoned, FatalSendError, QuotaBlocked, Sender, describe_block
from .config import home, queues_root, run_ref, token
from .exceptions import RunstoreError


def _queues(root: Path) -> list[QueueDir]:
    base = queues_root(root)
    if not base.is_dir():
        return []
    return [QueueDir(p) for p in sorted(base.iterdir()) if (p / "meta.json").is_file()]


def cmd_sync(args: argparse.Namespace) -> int:
    root = Path(args.path).resolve() if args.path else home()
    failures = 0
    queues = _queues(root)
    if not queues:
        print(f"nothing to sync in {queues_root(root)}")
        return 0
    for qdir in queues:
        if not qdir.try_lock():
            print(f"{qdir.path.name}: in use by a running process, skipped")
            continue
        try:
            meta = qdir.read_meta()
            url = args.url or meta.get("url") or os.environ.get("RUNSTORE_URL")
            if not url:
                raise RunstoreError("no server URL: pass --url or set RUNSTORE_URL")
            sender = Sender(qdir, Api(url, token(args.api_token)), wait_on_quota=False)
            records, points = qdir.pending()
            label = (
                meta.get("run_id") or meta.get("run_ref") or (meta.get("create") or {}).get("name") or qdir.path.name
            )
            progress = Progress(f"{label}", total=max(1, records), force=not args.quiet and sys.stderr.isatty())
            done = 0

            def advance(progress: Progress = progress) -> None:
                nonlocal done
                done += 1
                progress.update(done)

            sender.on_progress = advance
            sender.drain()
            progress.close()
            run_id = sender.meta.get("run_id") or sender.run_uuid
            sender.remove_queue()
            print(f"{qdir.path.name}: synced {records} records ({points} points) to run {run_id}")
        except QuotaBlocked as exc:
            failures += 1
            print(
                f"{qdir.path.name}: not synced: {exc}; the operations stay queued "
                "(run `runstore sync` again once the quota is raised)",
                file=sys.stderr,
            )
        except (FatalSendError, RunstoreError, OSError, ValueError) as exc:
            failures += 1
            print(f"{qdir.path.name}: not synced: {exc}", file=sys.stderr)
        except (KeyboardInterrupt, Abandoned):
            print("\ninterrupted; run `runstore sync` again to continue where it stopped", file=sys.stderr)
            return 130
        finally:
            qdir.unlock()
    return 1 if failures else 0


def cmd_status(args: argparse.Namespace) -> int:
    root = Path(args.path).resolve() if args.path else home()
    queues = _queues(root)
    total_bytes = 0
    print(f"{'queue':<34} {'run':<24} {'state':<8} {'records':>8} {'points':>10} {'disk':>10}")
    for qdir in queues:
        meta = qdir.read_meta()
        records, points = qdir.pending()
        size = qdir.disk_bytes()
        total_bytes += size
        run = meta.get("run_id") or meta.get("run_ref") or "(not created)"
        active = qdir.is_locked()
        state = "active" if active else "pending"
        print(f"{qdir.path.name:<34} {str(run)[:24]:<24} {state:<8} {records:>8} {points:>10} {_size(size):>10}")
        blocked = qdir.read_blocked()
        if blocked is not None and (blocked.get("kind") == "quota" or float(blocked.get("until") or 0) > time.time()):
            print(f"    {_block_line(blocked, active)}")
    print(f"{len(queues)} queues, {_size(total_bytes)} on disk in {queues_root(root)}")
    return 0


def _block_line(blocked: dict[str, Any], active: bool) -> str:
    """What holds a queue back, as ``runstore status`` shows it under the queue's row."""
    line = describe_block(blocked)
    if blocked.get("kind") != "quota":
        return line
    since = blocked.get("since")
    if isinstance(since, (int, float)):
        line += f" (since {dt.datetime.fromtimestamp(since):%Y-%m-%d %H:%M:%S})"
    retry_at = blocked.get("retry_at")
    if active and isinstance(retry_at, (int, float)):
        line += f"; next retry in {max(0, retry_at - time.time()):.0f} s"
    elif not active:
        line += "; `runstore sync` sends it once the quota is raised"
    return line


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_runs_ls(args: argparse.Namespace) -> int:
    from .project import init_project

    project = init_project(args.project, api_token=args.api_token, url=args.url)
    columns = ["sys/id", "sys/name", "sys/state", "sys/owner", "sys/creation_time"] + list(args.column or [])
    table = project.fetch_runs_table(query=args.query, columns=columns, limit=args.limit)
    widths = [max(len(c), *(len(_cell(r[c])) for r in table.rows)) if table.rows else len(c) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in table.rows:
        print("  ".join(_cell(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M:%S"))
    return str(value)


def cmd_download(args: argparse.Namespace) -> int:
    from ._internal.reader import Reader
    from .config import make_api

    api = make_api(args.url, args.api_token)
    ref = run_ref(args.run, args.project)
    target = Reader(api, ref).download(args.field, args.dest, step=args.step)
    print(target)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runstore", description="Runstore client: upload queued runs and read runs.")
    parser.add_argument("--url", help="server URL (default: RUNSTORE_URL, or the URL a queue was written for)")
    parser.add_argument("--api-token", help="API token (default: RUNSTORE_API_TOKEN)")
    parser.add_argument("-q", "--quiet", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    sync = sub.add_parser("sync", help="upload offline runs and whatever crashed or interrupted runs left queued")
    sync.add_argument("--path", help="RUNSTORE_HOME to read (default: RUNSTORE_HOME or ./.runstore)")
    sync.set_defaults(func=cmd_sync)

    status = sub.add_parser("status", help="pending operations per queued run, disk used")
    status.add_argument("--path")
    status.set_defaults(func=cmd_status)

    runs = sub.add_parser("runs", help="list runs").add_subparsers(dest="runs_command", required=True)
    ls = runs.add_parser("ls", help="list the runs of a project")
    ls.add_argument("--project", required=True)
    ls.add_argument("--query", help='a filter in the query language, e.g. "eval/acc > 0.9 and not sys/failed"')
    ls.add_argument("--column", action="append", help="extra field to show (repeatable)")
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(func=cmd_runs_ls)

    download = sub.add_parser("download", help="download a file, file set or file-series step of a run")
    download.add_argument("run", help="VIS-12 (with --project), ws/proj/VIS-12 or a UUID")
    download.add_argument("field", help="the field path, e.g. model/weights")
    download.add_argument("dest", help="destination file or directory")
    download.add_argument("--project")
    download.add_argument("--step", type=int)
    download.set_defaults(func=cmd_download)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args))
    except RunstoreError as exc:
        print(f"runstore: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
