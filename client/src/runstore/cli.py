"""The ``runstore`` command: sync, status, runs ls, compare, download, import.

``runs ls`` and ``compare`` are made for CI: machine-readable output (``--format json|csv|markdown``)
and exit statuses a pipeline can act on (``EXIT_*`` below; ``--fail-if-empty``, ``--fail-if``)."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import math
import operator
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._internal.api import Api
from ._internal.progress import Progress
from ._internal.queue import QueueDir
from ._internal.sender import Abandoned, FatalSendError, QuotaBlocked, Sender, describe_block
from .config import DEFAULT_URL, home, queues_root, run_ref, token
from .exceptions import ApiError, ConfigurationError, NetworkError, QueryNotSupportedError, RunstoreError


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


# -- exit codes of the read commands (runs ls, compare): usable as a CI gate ---------------------
EXIT_OK = 0
EXIT_EMPTY = 1  # --fail-if-empty and no run matched
EXIT_USAGE = 2  # bad arguments, configuration, a query the server refuses, an unknown project or run
EXIT_SERVER = 3  # the server could not be reached, failed (5xx, 429 after the retries) or refused the token
EXIT_GATE = 4  # a --fail-if condition held


class UsageError(RunstoreError):
    """A command line that cannot work as given (exit status 2)."""


def exit_code(exc: RunstoreError) -> int:
    """The exit status of a read command that failed with ``exc``."""
    if isinstance(exc, (NetworkError, QueryNotSupportedError)):
        return EXIT_SERVER
    if isinstance(exc, ApiError):
        return EXIT_SERVER if exc.status in (401, 403, 408, 429) or exc.status >= 500 else EXIT_USAGE
    return EXIT_USAGE


class _ReadApi(Api):
    """The API client of a read command: each call gives up after ``deadline`` seconds (``--timeout``)."""

    def __init__(self, url: str, api_token: str, deadline: float):
        super().__init__(url, api_token, timeout=max(1.0, min(30.0, deadline)))
        self.deadline = deadline

    def call_raw(self, method: str, path: str, *, deadline: float = 30.0, **kwargs: Any) -> Any:
        return super().call_raw(method, path, deadline=min(deadline, self.deadline), **kwargs)


def _read_api(args: argparse.Namespace) -> _ReadApi:
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    return _ReadApi(args.url or os.environ.get("RUNSTORE_URL") or DEFAULT_URL, token(args.api_token), args.timeout)


# -- --fail-if conditions ------------------------------------------------------------------------
_CONDITION = re.compile(r"^\s*(?:(delta)\s+)?([^\s<>=!]+)\s*(<=|>=|==|!=|=|<|>)\s*(.+?)\s*$")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class Condition:
    """``[delta ]PATH OP VALUE``: the gate fails when it holds (``eval/acc < 0.9``)."""

    text: str
    path: str
    op: str
    value: Any
    delta: bool = False

    @classmethod
    def parse(cls, text: str, *, allow_delta: bool) -> Condition:
        match = _CONDITION.match(text)
        if not match:
            raise UsageError(
                f"--fail-if {text!r}: expected 'PATH OP VALUE' with OP one of < <= > >= == != (e.g. 'eval/acc < 0.9')"
            )
        delta, path, op, raw = match.groups()
        if delta and not allow_delta:
            raise UsageError(f"--fail-if {text!r}: 'delta' compares two runs; it works with `runstore compare` only")
        value: Any
        if raw[:1] in "\"'" and len(raw) >= 2 and raw[-1] == raw[0]:
            value = raw[1:-1]
        elif raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            try:
                value = float(raw)
            except ValueError:
                value = raw
        if delta and not isinstance(value, float):
            raise UsageError(f"--fail-if {text!r}: a delta compares with a number")
        return cls(text.strip(), path, op, value, bool(delta))

    def check(self, actual: Any) -> str | None:
        """Why the gate fails for ``actual`` (None: it passes). A missing value fails: a gate must not
        pass because the metric was never logged."""
        if actual is None:
            return f"{self.text}: {'no delta for ' if self.delta else ''}{self.path} is missing"
        expected = self.value
        if isinstance(actual, dt.datetime) and isinstance(expected, str):
            try:  # sys/creation_time > "2026-01-01": an ISO 8601 date, UTC when it names no zone
                expected = dt.datetime.fromisoformat(expected.replace("Z", "+00:00"))
                if expected.tzinfo is None and actual.tzinfo is not None:
                    expected = expected.replace(tzinfo=dt.timezone.utc)
            except ValueError:
                pass
        if isinstance(self.value, bool) != isinstance(actual, bool) or (
            isinstance(self.value, float) != isinstance(actual, (int, float))
        ):
            return f"{self.text}: {self.path} = {_text(actual)} cannot be compared with {_text(self.value)}"
        try:
            holds = _OPERATORS[self.op](actual, expected)
        except TypeError:
            return f"{self.text}: {self.path} = {_text(actual)} cannot be compared with {_text(self.value)}"
        if holds or (isinstance(actual, float) and math.isnan(actual)):
            return f"{self.text}: {'delta ' if self.delta else ''}{self.path} = {_text(actual)}"
        return None


def _conditions(args: argparse.Namespace, *, allow_delta: bool) -> list[Condition]:
    return [Condition.parse(text, allow_delta=allow_delta) for text in args.fail_if or []]


# -- rendering -----------------------------------------------------------------------------------
FORMATS = ("table", "json", "csv", "markdown")


def _json_value(value: Any) -> Any:
    """A value as JSON has it: datetimes as ISO 8601, sets as sorted lists, NaN/Infinity as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    return value


def _text(value: Any, *, iso: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat() if iso else _cell(value)
    if isinstance(value, (set, frozenset, list, tuple)):
        return ", ".join(sorted(str(v) for v in value))
    return str(value)


def _md(value: Any) -> str:
    """A markdown table cell: pipes escaped, no line breaks."""
    return _text(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _markdown_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    marks = [{"r": "---:", "l": "---"}[a] for a in align] if align else ["---"] * len(header)
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return lines


def _print_table(columns: list[str], rows: list[dict[str, Any]]) -> None:
    widths = [max(len(c), *(len(_cell(r[c])) for r in rows)) if rows else len(c) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(_cell(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M:%S"))
    if isinstance(value, (set, frozenset)):
        return ", ".join(sorted(str(v) for v in value))
    return str(value)


def _columns(args: argparse.Namespace, conditions: list[Condition]) -> list[str]:
    base = (
        [c.strip() for c in args.columns.split(",") if c.strip()]
        if args.columns
        else ["sys/id", "sys/name", "sys/state", "sys/owner", "sys/creation_time"]
    )
    columns: list[str] = []
    for column in ["sys/id", *base, *(args.column or []), *(c.path for c in conditions)]:
        if column not in columns:
            columns.append(column)
    return columns


def cmd_runs_ls(args: argparse.Namespace) -> int:
    from .project import Project

    conditions = _conditions(args, allow_delta=False)
    if not args.project or args.project.count("/") != 1:
        raise UsageError(f"--project {args.project!r}: expected 'workspace/project'")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, not {args.limit}")
    columns = _columns(args, conditions)
    project = Project(args.project, _read_api(args))
    sort = args.sort or "-sys/creation_time"
    table = project.fetch_runs_table(
        query=args.query,
        columns=columns,
        sort_by=sort.lstrip("-+"),
        ascending=not sort.startswith("-"),
        limit=args.limit,
    )
    rows = table.rows
    failures = [
        {"run": row.get("sys/id"), "condition": c.text, "reason": reason}
        for row in rows
        for c in conditions
        if (reason := c.check(row.get(c.path))) is not None
    ]
    if args.format == "json":
        document: dict[str, Any] = {
            "project": args.project,
            "query": args.query,
            "columns": columns,
            "count": len(rows),
            "runs": [{c: _json_value(row[c]) for c in columns} for row in rows],
        }
        if conditions:
            document["gate"] = {
                "conditions": [c.text for c in conditions],
                "passed": not failures,
                "failures": failures,
            }
        json.dump(document, sys.stdout, indent=2, ensure_ascii=False, allow_nan=False)
        print()
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_text(row[c], iso=True) for c in columns])
    elif args.format == "markdown":
        print("\n".join(_markdown_table(columns, [[_text(row[c]) for c in columns] for row in rows])))
    else:
        _print_table(columns, rows)
    return _gate_exit(failures, empty=args.fail_if_empty and not rows)


def _gate_exit(failures: list[dict[str, Any]], *, empty: bool) -> int:
    for failure in failures:
        run = f"{failure['run']}: " if failure.get("run") else ""
        print(f"runstore: gate failed: {run}{failure['reason']}", file=sys.stderr)
    if failures:
        return EXIT_GATE
    if empty:
        print("runstore: no run matched (--fail-if-empty)", file=sys.stderr)
        return EXIT_EMPTY
    return EXIT_OK


# -- compare -------------------------------------------------------------------------------------
# Namespaces that are not metrics: the server's and the client's captures.
NOT_METRICS = ("sys/", "parameters/", "source_code/", "environment/", "monitoring/", "ci/")
AGGREGATES = ("last", "min", "max", "avg", "count")


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return _text(value)


def _fetch_run(api: Api, ref: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    info = dict(api.call("GET", f"runs/{ref}/"))
    fields = {f["path"]: f for f in api.call("GET", f"runs/{ref}/attributes")["fields"]}
    return info, fields


def _field(fields: dict[str, dict[str, Any]], path: str) -> Any:
    """A field's value (a series' last value); ``path:min`` etc. for a float series' aggregates."""
    from ._internal.reader import field_value

    name, _, aggregate = path.rpartition(":") if path.rsplit(":", 1)[-1] in AGGREGATES else (path, "", "")
    field = fields.get(name)
    if field is None:
        return None
    if aggregate:
        value = field.get("value")
        return field_value({"type": "float", "value": value.get(aggregate)}) if isinstance(value, dict) else None
    return field_value(field)


def _run_summary(api: Api, info: dict[str, Any]) -> dict[str, Any]:
    workspace, _, slug = str(info.get("project") or "").partition("/")
    return {
        "id": info.get("id"),
        "uuid": info.get("uuid"),
        "project": info.get("project"),
        "name": info.get("name") or "",
        "state": info.get("state"),
        "url": f"{api.url}/w/{workspace}/{slug}/runs/{info.get('id')}/" if workspace and slug else None,
    }


def _is_metric(field: dict[str, Any], prefixes: list[str]) -> bool:
    path = str(field["path"])
    if prefixes:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)
    return field.get("type") in ("int", "float", "float_series") and not path.startswith(NOT_METRICS)


def compare_runs(
    a_fields: dict[str, dict[str, Any]], b_fields: dict[str, dict[str, Any]], metric_prefixes: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(metrics, changed parameters, unchanged parameter count) of runs A and B."""
    from ._internal.reader import field_value

    metrics = []
    paths = sorted({p for fields in (a_fields, b_fields) for p, f in fields.items() if _is_metric(f, metric_prefixes)})
    for path in paths:
        a, b = _field(a_fields, path), _field(b_fields, path)
        a_num, b_num = _numeric(a), _numeric(b)
        delta = b_num - a_num if a_num is not None and b_num is not None else None
        if delta is not None and not math.isfinite(delta):
            delta = None
        relative = delta / abs(a_num) if delta is not None and a_num else None
        metrics.append({"path": path, "a": a, "b": b, "delta": delta, "relative": relative})
    parameters, unchanged = [], 0
    names = sorted({p for fields in (a_fields, b_fields) for p in fields if p.startswith("parameters/")})
    for path in names:
        a = field_value(a_fields[path]) if path in a_fields else None
        b = field_value(b_fields[path]) if path in b_fields else None
        if path in a_fields and path in b_fields and _json_value(a) == _json_value(b):
            unchanged += 1
            continue
        change = "added" if path not in a_fields else "removed" if path not in b_fields else "changed"
        parameters.append({"path": path, "a": a, "b": b, "change": change})
    return metrics, parameters, unchanged


def cmd_compare(args: argparse.Namespace) -> int:
    conditions = _conditions(args, allow_delta=True)
    project = args.project or os.environ.get("RUNSTORE_PROJECT")
    refs = []
    for ref in (args.run_a, args.run_b):
        try:
            refs.append(run_ref(ref, project))
        except ConfigurationError as exc:
            raise UsageError(str(exc)) from None
    api = _read_api(args)
    (a_info, a_fields), (b_info, b_fields) = _fetch_run(api, refs[0]), _fetch_run(api, refs[1])
    a_run, b_run = _run_summary(api, a_info), _run_summary(api, b_info)
    metrics, parameters, unchanged = compare_runs(a_fields, b_fields, list(args.metric or []))
    deltas = {m["path"]: m["delta"] for m in metrics}
    failures = []
    for condition in conditions:
        if condition.delta:
            a_value, b_value = _numeric(_field(a_fields, condition.path)), _numeric(_field(b_fields, condition.path))
            actual = deltas.get(condition.path)
            if actual is None and a_value is not None and b_value is not None:
                actual = b_value - a_value  # a path outside the listed metrics (e.g. an aggregate)
        else:
            actual = _field(b_fields, condition.path)
        reason = condition.check(actual)
        if reason is not None:
            failures.append({"run": b_run["id"], "condition": condition.text, "reason": reason})
    if args.format == "json":
        document: dict[str, Any] = {
            "a": a_run,
            "b": b_run,
            "metrics": [{k: _json_value(v) for k, v in m.items()} for m in metrics],
            "parameters": [{k: _json_value(v) for k, v in p.items()} for p in parameters],
            "unchanged_parameters": unchanged,
        }
        if conditions:
            document["gate"] = {
                "conditions": [c.text for c in conditions],
                "passed": not failures,
                "failures": failures,
            }
        json.dump(document, sys.stdout, indent=2, ensure_ascii=False, allow_nan=False)
        print()
    else:
        print("\n".join(_compare_markdown(a_run, b_run, metrics, parameters, unchanged, conditions, failures)))
    return _gate_exit(failures, empty=False)


def _run_link(run: dict[str, Any]) -> str:
    label = str(run["id"])
    text = f"[{label}]({run['url']})" if run.get("url") else label
    if run.get("name"):
        text += f" {_md(run['name'])}"
    return f"{text} ({run.get('state') or 'unknown'})"


def _compare_markdown(
    a: dict[str, Any],
    b: dict[str, Any],
    metrics: list[dict[str, Any]],
    parameters: list[dict[str, Any]],
    unchanged: int,
    conditions: list[Condition],
    failures: list[dict[str, Any]],
) -> list[str]:
    a_id, b_id = str(a["id"]), str(b["id"])
    lines = [f"### Runstore: {a_id} → {b_id}", "", f"{_run_link(a)} → {_run_link(b)}", ""]
    if metrics:
        rows = [
            [
                m["path"],
                _number(m["a"]),
                _number(m["b"]),
                "" if m["delta"] is None else f"{m['delta']:+.6g}",
                "" if m["relative"] is None else f"{m['relative'] * 100:+.2f}%",
            ]
            for m in metrics
        ]
        lines += _markdown_table(["metric", a_id, b_id, "Δ", "Δ %"], rows, ["l", "r", "r", "r", "r"])
    else:
        lines.append("No metrics.")
    counts = {kind: sum(1 for p in parameters if p["change"] == kind) for kind in ("changed", "added", "removed")}
    lines += [
        "",
        f"#### Parameters: {counts['changed']} changed, {counts['added']} added, "
        f"{counts['removed']} removed, {unchanged} unchanged",
    ]
    if parameters:
        rows = [[p["path"], _number(p["a"]), _number(p["b"])] for p in parameters]
        lines += [""] + _markdown_table(["parameter", a_id, b_id], rows)
    if conditions:
        lines.append("")
        if failures:
            lines.append(f"**Gate failed** on {b_id}:")
            lines += [f"- `{_md(f['reason'])}`" for f in failures]
        else:
            lines.append(f"**Gate passed** on {b_id}: " + ", ".join(f"`{_md(c.text)}`" for c in conditions))
    return lines


def cmd_download(args: argparse.Namespace) -> int:
    from ._internal.reader import Reader
    from .config import make_api

    api = make_api(args.url, args.api_token)
    ref = run_ref(args.run, args.project)
    target = Reader(api, ref).download(args.field, args.dest, step=args.step)
    print(target)
    return 0


def _gate_options(parser: argparse.ArgumentParser, *, formats: tuple[str, ...], default: str) -> None:
    parser.add_argument("--format", choices=formats, default=default, help=f"output format (default {default})")
    parser.add_argument(
        "--fail-if",
        action="append",
        metavar="CONDITION",
        help="exit 4 when it holds, e.g. 'eval/acc < 0.9' (repeatable; a missing value also fails"
        + ("; 'delta PATH OP N' tests B minus A)" if "table" not in formats else ")"),
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to keep retrying an unreachable or failing server before exit 3 (default 30)",
    )


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
    ls = runs.add_parser(
        "ls",
        help="list the runs of a project",
        description="List runs; exit status 0 ok, 1 nothing matched (--fail-if-empty), 2 usage error, "
        "3 server or network error, 4 a --fail-if condition held for a listed run.",
    )
    ls.add_argument("--project", required=True)
    ls.add_argument("--query", help='a filter in the query language, e.g. "eval/acc > 0.9 and not sys/failed"')
    ls.add_argument("--columns", help="comma-separated fields to show instead of the default ones (sys/id always)")
    ls.add_argument("--column", action="append", help="extra field to show (repeatable)")
    ls.add_argument("--sort", help="field to sort by; descending: --sort=-PATH (default -sys/creation_time)")
    ls.add_argument("--limit", type=int, default=50)
    _gate_options(ls, formats=FORMATS, default="table")
    ls.add_argument("--fail-if-empty", action="store_true", help="exit 1 when no run matches")
    ls.set_defaults(func=cmd_runs_ls, read_command=True)

    compare = sub.add_parser(
        "compare",
        help="metric deltas and changed parameters of two runs (e.g. for a pull-request comment)",
        description="Compare run B with run A: the last value of each metric, its change, and the parameters that "
        "differ. Exit status 0 ok, 2 usage error (or an unknown run), 3 server or network error, "
        "4 a --fail-if condition held for run B.",
    )
    compare.add_argument("run_a", metavar="RUN_A", help="the baseline: VIS-3 (with --project), ws/proj/VIS-3 or a UUID")
    compare.add_argument("run_b", metavar="RUN_B", help="the candidate, same forms")
    compare.add_argument("--project", help="workspace/project of short ids (default: RUNSTORE_PROJECT)")
    compare.add_argument(
        "--metric", action="append", help="compare only this field or namespace (repeatable; default: every number)"
    )
    _gate_options(compare, formats=("markdown", "json"), default="markdown")
    compare.set_defaults(func=cmd_compare, read_command=True)

    download = sub.add_parser("download", help="download a file, file set or file-series step of a run")
    download.add_argument("run", help="VIS-12 (with --project), ws/proj/VIS-12 or a UUID")
    download.add_argument("field", help="the field path, e.g. model/weights")
    download.add_argument("dest", help="destination file or directory")
    download.add_argument("--project")
    download.add_argument("--step", type=int)
    download.set_defaults(func=cmd_download)

    from .importers import add_parser as add_import_parser
    from .records import add_parser as add_erase_parser
    from .reproduce import add_parser as add_reproduce_parser

    add_import_parser(sub)
    add_reproduce_parser(sub)
    add_erase_parser(sub)

    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), as a return value for main(argv) callers
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args))
    except RunstoreError as exc:
        print(f"runstore: {exc}", file=sys.stderr)
        return exit_code(exc) if getattr(args, "read_command", False) else 1


if __name__ == "__main__":
    sys.exit(main())
