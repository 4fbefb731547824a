"""``runstore artifacts list|lineage`` and ``runstore erase``: a workspace's artifacts, a version's
whole lineage as a ZIP for an audit, and deleting runs for good (GDPR) with the record of it.

* ``artifacts list WORKSPACE [--name TEXT]``: the named data sets and models, with their versions,
  size, newest version and how many runs consumed and produced them (counted over the runs you may
  read);
* ``artifacts lineage WORKSPACE HASH [-o FILE]``: the version, its files, the runs that produced and
  consumed it and the chain back to their data, each run with its fields, series, files, lineage and
  audit entries, as one ZIP;
* ``erase RUN [RUN ...] --reason TEXT --yes`` and ``erase --consumers-of HASH --workspace WS --reason
  TEXT --yes``: delete the runs (or every run that consumed the version) for good; without ``--yes``
  nothing is deleted and the runs that would go are printed. The server answers with the erasure
  records (one per project), which are printed as JSON;
* ``export WORKSPACE/PROJECT [RUN] [-o PATH]``: the ZIP archive of the project or of one run
  (attributes, series, files, lineage and audit entries), waited for while the server builds it;
  ``--no-wait`` only asks for it, ``--id ID`` downloads one asked for before.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._internal.api import Api
from .config import make_api, run_ref
from .exceptions import RunstoreError

__all__ = [
    "add_artifact_commands",
    "add_parser",
    "download_export",
    "download_lineage",
    "erase",
    "erase_consumers",
    "list_artifacts",
    "request_export",
]

CHUNK = 1 << 20


def _workspace_path(workspace: str, *parts: str) -> str:
    return "/".join(["workspaces", quote(workspace, safe=""), *(quote(p, safe="") for p in parts)])


def list_artifacts(api: Api, workspace: str, *, name: str = "", limit: int | None = None) -> list[dict[str, Any]]:
    """The workspace's named artifacts by name (every page, or the first ``limit``)."""
    params: dict[str, Any] | None = {"name": name, "limit": min(limit or 1000, 1000)}
    path = _workspace_path(workspace, "artifacts") + "/"
    out: list[dict[str, Any]] = []
    while path and (limit is None or len(out) < limit):
        page = api.call("GET", path, params=params)
        out.extend(page["results"])
        path, params = page.get("next"), None
    return out if limit is None else out[:limit]


def download_lineage(api: Api, workspace: str, digest: str, dest: str | Path | None = None) -> Path:
    """The lineage archive of version ``digest``, written to ``dest`` (default: the server's file name
    in the current directory); written to a temporary name first, so a failed download leaves nothing."""
    path = _workspace_path(workspace, "artifact-versions", digest, "lineage.zip")
    response = api.call_raw("GET", path, stream=True, timeout=600)
    return _save(response, dest, f"{workspace}-lineage-{digest[:12]}.zip")


def _save(response: Any, dest: str | Path | None, name: str) -> Path:
    """Write a streamed ``response`` to ``dest`` (a file or a directory; default: ``name`` here) under a
    temporary name first, so a failed download leaves nothing; closes the response."""
    try:
        target = Path(dest) if dest else Path(name)
        if target.is_dir():
            target = target / name
        partial = target.with_name(target.name + ".part")
        with open(partial, "wb") as out:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
        partial.replace(target)
        return target
    finally:
        response.close()


def request_export(api: Api, project: str, run: str | None = None) -> dict[str, Any]:
    """Ask for a ZIP archive of ``project`` (``workspace/project``) or of one of its runs (attributes,
    series, files, lineage and audit entries); the server builds it in the background."""
    body = {"project": project, **({"run": run} if run else {})}
    export: dict[str, Any] = api.call("POST", "exports/", body=body)
    return export


def download_export(
    api: Api, export_id: str, dest: str | Path | None = None, *, timeout: float = 600, poll: float = 1.0
) -> Path:
    """Wait for export ``export_id`` to be built (at most ``timeout`` seconds), then write it to ``dest``
    (a file or a directory; default: the server's file name here), under a temporary name first."""
    deadline = time.monotonic() + timeout
    while True:
        export = api.call("GET", f"exports/{quote(export_id, safe='')}/")
        if export["state"] == "done":
            break
        if export["state"] == "failed":
            raise RunstoreError(f"export {export_id} failed: {export.get('error') or 'no reason given'}")
        if time.monotonic() >= deadline:
            raise RunstoreError(f"export {export_id} is still {export['state']} after {timeout:g} s")
        time.sleep(poll)
        poll = min(poll * 1.5, 5.0)
    name = export["project"].replace("/", "-") + (f"-{export['run']}" if export.get("run") else "") + ".zip"
    response = api.call_raw("GET", f"exports/{quote(export_id, safe='')}/download", stream=True, timeout=600)
    return _save(response, dest, name)


def erase(api: Api, runs: list[str], reason: str) -> list[dict[str, Any]]:
    """Delete ``runs`` (UUIDs or ``workspace/project/KEY-N``) for good; the erasure records."""
    records: list[dict[str, Any]] = api.call("POST", "erasures/", body={"runs": runs, "reason": reason})["erasures"]
    return records


def erase_consumers(api: Api, workspace: str, digest: str, reason: str) -> list[dict[str, Any]]:
    """Delete every run that consumed ``digest`` in ``workspace`` for good; the erasure records."""
    path = _workspace_path(workspace, "artifact-versions", digest, "erase-consumers")
    records: list[dict[str, Any]] = api.call("POST", path, body={"reason": reason})["erasures"]
    return records


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def cmd_list(args: argparse.Namespace) -> int:
    rows = list_artifacts(make_api(args.url, args.api_token), args.workspace, name=args.name or "")
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2, default=str)
        print()
        return 0
    print(f"{'name':30} {'versions':>8} {'size':>10} {'newest':14} {'consumed':>8} {'produced':>8}")
    for row in rows:
        latest = (row.get("latest") or {}).get("hash", "")[:12]
        print(
            f"{row['name'][:30]:30} {row['versions']:>8} {_size(row['size']):>10} {latest:14} "
            f"{row['consumers']:>8} {row['producers']:>8}"
        )
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    print(download_lineage(make_api(args.url, args.api_token), args.workspace, args.hash, args.output))
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    api = make_api(args.url, args.api_token)
    if args.consumers_of:
        if not args.workspace:
            raise RunstoreError("--consumers-of needs --workspace")
        if args.runs:
            raise RunstoreError("name runs or --consumers-of, not both")
        plan = api.call(
            "GET", _workspace_path(args.workspace, "artifact-versions", args.consumers_of, "erase-consumers")
        )
        doomed = [r["id"] for r in plan["runs"]]
    else:
        if not args.runs:
            raise RunstoreError("name the runs to erase, or --consumers-of HASH --workspace WS")
        doomed = [run_ref(r, args.project) for r in args.runs]
    if not args.yes:
        print("would delete for good (add --yes to do it): " + (", ".join(doomed) or "nothing"), file=sys.stderr)
        return 2
    if not (args.reason or "").strip():
        raise RunstoreError("--reason is required: it is recorded with the erasure")
    if args.consumers_of:
        records = erase_consumers(api, args.workspace, args.consumers_of, args.reason)
    else:
        records = erase(api, doomed, args.reason)
    json.dump(records, sys.stdout, indent=2, default=str)
    print()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    api = make_api(args.url, args.api_token)
    if args.id:
        export_id = args.id
    else:
        if not args.project:
            raise RunstoreError("name the project (workspace/project), or --id of an export asked for before")
        export = request_export(api, args.project, args.run)
        if args.no_wait:
            json.dump(export, sys.stdout, indent=2, default=str)
            print()
            return 0
        export_id = export["id"]
    print(download_export(api, export_id, args.output, timeout=args.timeout))
    return 0


def add_artifact_commands(artifacts: Any) -> None:
    """``artifacts list`` and ``artifacts lineage`` under the ``artifacts`` command."""
    listing = artifacts.add_parser("list", help="a workspace's named artifacts: versions, size, consumers, producers")
    listing.add_argument("workspace")
    listing.add_argument("--name", help="only names containing this (any case)")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(func=cmd_list, read_command=True)
    lineage = artifacts.add_parser(
        "lineage",
        help="download a version's whole lineage (runs that produced and consumed it, back to the data) as a ZIP",
    )
    lineage.add_argument("workspace")
    lineage.add_argument("hash")
    lineage.add_argument("-o", "--output", help="file or directory (default: ./WORKSPACE-lineage-HASH.zip)")
    lineage.set_defaults(func=cmd_lineage, read_command=True)


def add_parser(sub: Any) -> None:
    """``erase``."""
    parser = sub.add_parser(
        "erase",
        help="delete runs for good (GDPR), or every run that consumed an artifact version; prints the records",
        description="Without --yes nothing is deleted: the runs that would go are printed (exit 2).",
    )
    parser.add_argument("runs", nargs="*", help="VIS-12 (with --project), ws/proj/VIS-12 or a UUID")
    parser.add_argument("--project")
    parser.add_argument("--consumers-of", metavar="HASH", help="every run that consumed this version")
    parser.add_argument("--workspace", help="the version's workspace (with --consumers-of)")
    parser.add_argument("--reason", help="why (recorded with the erasure; required with --yes)")
    parser.add_argument("--yes", action="store_true", help="delete for good")
    parser.set_defaults(func=cmd_erase)
    export = sub.add_parser(
        "export",
        help="a ZIP of a project or one run (attributes, series, files, lineage, audit entries), once built",
        description="Asks the server for the archive, waits while it is built, and writes it (its path is printed).",
    )
    export.add_argument("project", nargs="?", help="workspace/project")
    export.add_argument("run", nargs="?", help="one run of it (KEY-N or a UUID); default: the whole project")
    export.add_argument("--id", help="download an export asked for before instead of asking for a new one")
    export.add_argument("-o", "--output", help="file or directory (default: ./WORKSPACE-PROJECT[-RUN].zip)")
    export.add_argument("--no-wait", action="store_true", help="only ask for it; print the export (its id)")
    export.add_argument("--timeout", type=float, default=600, help="seconds to wait for the build (default 600)")
    export.set_defaults(func=cmd_export)
