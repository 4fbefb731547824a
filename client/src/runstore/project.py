"""``Project`` and ``init_project``: read a project's runs as a table.

A thin layer over ``GET /runs/?project=`` (paged) and each run's
``/attributes``: ``columns``, ``sort_by``, ``ascending`` and ``limit`` are
applied here. ``query`` is passed to the server as ``?query=``; the server
must echo it (a ``"query"`` key in the page) to show it evaluated it,
otherwise QueryNotSupportedError is raised (the server's query engine is a
later feature; this layer is expected to be replaced by it).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from typing import Any

from ._internal.reader import field_value, require_pandas
from .exceptions import ConfigurationError, QueryNotSupportedError, ReadOnlyError
from .run import make_api

RUN_COLUMNS = {
    "sys/id": "id",
    "sys/name": "name",
    "sys/description": "description",
    "sys/owner": "owner",
    "sys/state": "state",
    "sys/tags": "tags",
    "sys/custom_run_id": "custom_run_id",
    "sys/creation_time": "creation_time",
    "sys/modification_time": "modification_time",
    "sys/ping_time": "ping_time",
    "sys/finish_time": "finish_time",
    "sys/running_time": "running_time",
    "sys/project": "project",
}
DEFAULT_COLUMNS = ["sys/id", "sys/name", "sys/state", "sys/owner", "sys/tags", "sys/creation_time"]


def _run_value(run: dict[str, Any], column: str) -> Any:
    value = run.get(RUN_COLUMNS[column])
    if column.endswith("_time") and isinstance(value, str) and column != "sys/running_time":
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if column == "sys/tags":
        return set(value or [])
    if column == "sys/failed":
        return run.get("state") == "failed"
    return value


class Table:
    """Rows of runs; ``to_pandas()`` for a DataFrame, ``to_rows()`` for a list of dicts."""

    def __init__(self, columns: list[str], rows: list[dict[str, Any]]):
        self.columns = columns
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def to_rows(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self.rows]

    def to_pandas(self) -> Any:
        pandas = require_pandas()
        return pandas.DataFrame(self.rows, columns=self.columns)


class Project:
    """A project, opened read-only: ``runstore.init_project("acme/vision")``."""

    def __init__(self, name: str, api: Any):
        self.name = name
        self._api = api

    def __repr__(self) -> str:
        return f"<Project {self.name}>"

    def fetch(self) -> dict[str, Any]:
        workspace, slug = self.name.split("/")
        return dict(self._api.call("GET", f"workspaces/{workspace}/projects/{slug}/"))

    def _runs(self, query: str | None, state: str | None, limit: int | None) -> Iterator[dict[str, Any]]:
        offset, page_size, seen = 0, 200, 0
        while True:
            params: dict[str, Any] = {"project": self.name, "limit": page_size, "offset": offset}
            if query:
                params["query"] = query
            if state:
                params["state"] = state
            page = self._api.call("GET", "runs/", params=params)
            if query and page.get("query") != query:
                raise QueryNotSupportedError(
                    "this server does not evaluate run queries yet (query=...); fetch without a query and filter the table"
                )
            for run in page["results"]:
                yield run
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if not page.get("next") or not page["results"]:
                return
            offset += len(page["results"])

    def fetch_runs_table(
        self,
        *,
        query: str | None = None,
        columns: list[str] | None = None,
        sort_by: str = "sys/creation_time",
        ascending: bool = False,
        limit: int | None = None,
        state: str | None = None,
        tags: list[str] | None = None,
    ) -> Table:
        """Runs of the project, one row each. ``columns`` are field paths (``sys/*`` or any field; a series
        gives its last value). Sorting and ``limit`` happen on the client (sorting reads every run)."""
        columns = list(columns or DEFAULT_COLUMNS)
        wanted = columns + ([sort_by] if sort_by and sort_by not in columns else [])
        sort_locally = sort_by not in ("sys/creation_time",)
        runs = list(self._runs(query, state, None if sort_locally else limit))
        if tags:
            runs = [r for r in runs if set(tags) <= set(r.get("tags") or [])]
        needs_fields = any(c not in RUN_COLUMNS and c != "sys/failed" for c in wanted)
        rows = []
        for run in runs:
            row: dict[str, Any] = {}
            fields: dict[str, Any] = {}
            if needs_fields:
                response = self._api.call("GET", f"runs/{run['uuid']}/attributes")
                fields = {f["path"]: field_value(f) for f in response["fields"]}
            for column in wanted:
                if column in RUN_COLUMNS or column == "sys/failed":
                    row[column] = _run_value(run, column)
                else:
                    row[column] = fields.get(column)
            rows.append(row)
        if sort_by:
            present = [r for r in rows if r.get(sort_by) is not None]
            missing = [r for r in rows if r.get(sort_by) is None]
            try:
                present.sort(key=lambda r: r[sort_by], reverse=not ascending)
            except TypeError:
                present.sort(key=lambda r: str(r[sort_by]), reverse=not ascending)
            rows = present + missing
        if limit is not None:
            rows = rows[:limit]
        if sort_by not in columns:
            for row in rows:
                row.pop(sort_by, None)
        return Table(columns, rows)

    def __setitem__(self, key: str, value: Any) -> None:
        raise ReadOnlyError("project fields are not supported yet; a project is opened read-only")


def init_project(
    project: str | None = None,
    api_token: str | None = None,
    url: str | None = None,
    mode: str = "read-only",
) -> Project:
    """Open a project to read its runs."""
    project = project or os.environ.get("RUNSTORE_PROJECT")
    if not project or project.count("/") != 1:
        raise ConfigurationError(f"project={project!r}; expected 'workspace/project' (or set RUNSTORE_PROJECT)")
    if mode not in ("read-only", "async", "sync"):
        raise ConfigurationError(f"mode={mode!r}: a project is opened read-only")
    return Project(project, make_api(url, api_token))
