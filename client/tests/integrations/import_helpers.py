"""What the importer tests share: reading a run's series and fields back from the live server."""

from __future__ import annotations

import datetime as dt
from typing import Any

import runstore
from runstore._internal.api import Api


def points(run: runstore.Run, path: str) -> list[tuple[int, Any, float]]:
    """(step, value, unix seconds) of every point of a series, read back from the server."""
    frame = run[path].fetch_values(include_timestamp=True)
    stamps = [ts.timestamp() for ts in frame["timestamp"]]
    return list(zip(frame["step"].tolist(), frame["value"].tolist(), stamps, strict=True))


def creation_time(run: runstore.Run) -> dt.datetime:
    value = run["sys/creation_time"].fetch()
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def series_counts(server: Any, project: str) -> dict[str, dict[str, int]]:
    """{run id: {series path: points}} of every run of the project, as the server counts them."""
    api = Api(server.url, server.token)
    out: dict[str, dict[str, int]] = {}
    for run in api.call("GET", "runs/", params={"project": project, "limit": 1000})["results"]:
        fields = api.call("GET", f"runs/{run['uuid']}/attributes")["fields"]
        out[run["id"]] = {
            f["path"]: int(f["value"].get("count") or 0)
            for f in fields
            if str(f.get("type", "")).endswith("_series") and isinstance(f.get("value"), dict)
        }
    return out
