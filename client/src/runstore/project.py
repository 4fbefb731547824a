"""``Project`` and ``init_project``: read a project's runs as a table.

Runs come from the server's query engine (``GET /runs/?project=&query=&sort=&columns=``, or
``POST /runs/query`` with the same parameters as a JSON body when they would make a URL longer
than servers and proxies accept): filtering, sorting, column selection and paging happen on the server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from ._internal.reader import field_value, require_pandas
from .config import make_api
from .exceptions import ConfigurationError, QueryNotSupportedError, ReadOnlyError

DEFAULT_COLUMNS = ["sys/id", "sys/name", "sys/state", "sys/owner", "sys/tags", "sys/creation_time"]
# query strings longer than this go in a POST body: request lines past ~4 KB are refused by
# gunicorn (limit_request_line 4094) and many proxies
MAX_QUERY_STRING = 2000


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

    def _runs(
        self,
        query: str | None,
        state: str | None,
        limit: int | None,
        sort: str | None = None,
        columns: list[str] | None = None,
    ) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
        """Pages of the server's query engine: (run, {column: type}) pairs."""
        offset, page_size, seen = 0, 200 if limit is None else max(1, min(limit, 1000)), 0
        while True:
            params: dict[str, Any] = {"project": self.name, "limit": page_size, "offset": offset}
            if query:
                params["query"] = query
            if state:
                params["state"] = state
            if sort:
                params["sort"] = sort
            if columns:
                params["columns"] = json.dumps(columns)
            if len(urlencode(params)) > MAX_QUERY_STRING:
                body = {**params, "columns": list(columns or []), "sort": [sort] if sort else []}
                page = self._api.call(
                    "POST", "runs/query", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
                )
            else:
                page = self._api.call("GET", "runs/", params=params)
            if query and page.get("query") != query:
                raise QueryNotSupportedError(
                    "this server does not evaluate run queries (query=...); fetch without a query and filter the table"
                )
            types = {c["path"]: c.get("type") or "" for c in page.get("columns") or []}
            for run in page["results"]:
                yield run, types
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
        """Runs of the project, one row each, filtered, sorted and paged by the server's query engine.

        ``query`` is the server's filter language (e.g. ``'eval/acc > 0.93 and sys/tags contains "best"'``);
        ``columns`` are field paths (``sys/*`` or any field; a series gives its last value, or use
        ``path:min`` etc.); runs lacking ``sort_by`` come last."""
        columns = list(columns or DEFAULT_COLUMNS)
        filters = [f"({query})"] if query else []
        filters += [f"sys/tags contains {json.dumps(tag)}" for tag in tags or []]
        combined = " and ".join(filters) if filters else None
        sort = f"{'' if ascending else '-'}{sort_by}" if sort_by else None
        rows = []
        for run, types in self._runs(combined, state, limit, sort=sort, columns=columns):
            fields = run.get("fields") or {}
            row: dict[str, Any] = {}
            for column in columns:
                kind = types.get(column, "")
                value = fields.get(column)
                if isinstance(value, dict) and "last" in value:
                    value = value["last"]
                    kind = "float" if "float_series" in kind else kind
                row[column] = field_value({"type": kind, "value": value}) if "/" not in kind else value
            rows.append(row)
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
