"""The model registry from Python: register a run's file or file set as a model version, move
versions between stages, and download "the production version of model X".

These are explicit calls, not logging: they wait for the server and raise
:class:`~runstore.ApiError` (:class:`~runstore.NotFoundError` for a 404) when it refuses, and
:class:`~runstore.NetworkError` when it cannot be reached after the retries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._internal.api import Api
from ._internal.reader import contained, safe_base_name
from .config import make_api
from .exceptions import ConfigurationError, NetworkError, RunstoreError
from .run import Run

STAGES = ("none", "staging", "production", "archived")


def _model_path(workspace: str, name: str) -> str:
    return f"workspaces/{quote(workspace, safe='')}/models/{quote(name, safe='')}/"


def _split(name: str, workspace: str | None) -> tuple[str, str]:
    """``workspace/name`` or ``name`` with ``workspace=`` (default: the workspace of RUNSTORE_PROJECT)."""
    if "/" in name:
        ws, _, model = name.partition("/")
        if workspace and workspace != ws:
            raise ConfigurationError(f"name={name!r} names the workspace {ws!r}, not workspace={workspace!r}")
        return ws, model
    workspace = workspace or (os.environ.get("RUNSTORE_PROJECT") or "").partition("/")[0]
    if not workspace:
        raise ConfigurationError(f"name={name!r}: give 'workspace/{name}', workspace=, or set RUNSTORE_PROJECT")
    return workspace, name


def _check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ConfigurationError(f"stage={stage!r}; expected one of {', '.join(STAGES)}")
    return stage


def register_model(
    run: Run, path: str, *, name: str, stage: str | None = None, description: str = "", timeout: float = 60.0
) -> dict[str, Any]:
    """Register the ``file`` or ``file_set`` field ``path`` of ``run`` as the next version of the model
    ``name`` in the run's workspace (created on first use), optionally straight into ``stage``.

    Waits (at most ``timeout`` seconds) until what the run logged so far reached the server, so a
    file uploaded just before is registered. Returns the version: ``version``, ``stage``, ``model``,
    ``run``, ``files``, ``download_url``, ...
    """
    if stage is not None:
        _check_stage(stage)
    if "/" in name:
        raise ConfigurationError(f"name={name!r}: a model is registered in its run's workspace; give the bare name")
    api = getattr(run, "_api", None)
    if api is None:
        raise RunstoreError("an offline or debug run cannot register a model; sync it and open it read-only")
    if run.mode != "read-only" and not run.wait(timeout=timeout):
        raise NetworkError(f"the run's logged data did not reach the server within {timeout:g}s; nothing registered")
    reader = run._reader()
    info = api.call("GET", f"runs/{reader.ref}/")
    workspace = str(info["project"]).split("/")[0]
    body: dict[str, Any] = {"run": str(info["uuid"]), "path": path, "description": description}
    if stage is not None:
        body["stage"] = stage
    return dict(api.call("POST", _model_path(workspace, name) + "versions/", body=body))


def set_model_stage(
    name: str,
    version: int,
    stage: str,
    *,
    archive_existing: bool = False,
    workspace: str | None = None,
    api_token: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Move version ``version`` of model ``name`` to ``stage`` (promote or demote). With
    ``archive_existing``, the model's other versions in that stage are archived. Returns the version."""
    ws, model = _split(name, workspace)
    api = make_api(url, api_token)
    try:
        body = {"stage": _check_stage(stage), "archive_existing": archive_existing}
        return dict(api.call("POST", _model_path(ws, model) + f"versions/{int(version)}/stage", body=body))
    finally:
        api.close()


def get_model_version(
    name: str,
    *,
    stage: str | None = None,
    version: int | None = None,
    alias: str | None = None,
    workspace: str | None = None,
    api_token: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """One version of model ``name``: by ``version`` number, by ``alias``, or the newest in ``stage``
    (default: production). Its ``files`` list what a download writes."""
    ws, model = _split(name, workspace)
    api = make_api(url, api_token)
    try:
        return _version_info(api, ws, model, stage=stage, version=version, alias=alias)
    finally:
        api.close()


def _version_info(
    api: Api, workspace: str, model: str, *, stage: str | None, version: int | None, alias: str | None
) -> dict[str, Any]:
    if sum(x is not None for x in (stage, version, alias)) > 1:
        raise ConfigurationError("give one of stage=, version= or alias=")
    base = _model_path(workspace, model)
    if version is not None:
        return dict(api.call("GET", base + f"versions/{int(version)}/"))
    if alias is not None:
        return dict(api.call("GET", base + f"aliases/{quote(alias, safe='')}"))
    return dict(api.call("GET", base + f"stages/{_check_stage(stage or 'production')}/"))


def download_model(
    name: str,
    destination: str | os.PathLike[str] | None = None,
    *,
    stage: str | None = None,
    version: int | None = None,
    alias: str | None = None,
    workspace: str | None = None,
    api_token: str | None = None,
    url: str | None = None,
) -> Path:
    """Download a version of model ``name`` (default: the newest in production; or ``stage=``,
    ``version=``, ``alias=``) and return where it was written.

    A ``file`` version is written to ``destination`` (a folder, given with a trailing slash or
    existing, receives it under its own name); a ``file_set`` version becomes the folder
    ``destination`` (default ``<name>-v<N>``). The version is resolved once, so a promotion during
    the download never mixes two versions. Nothing is written outside the destination.
    """
    ws, model = _split(name, workspace)
    api = make_api(url, api_token)
    try:
        info = _version_info(api, ws, model, stage=stage, version=version, alias=alias)
        number = int(info["version"])
        download = _model_path(ws, model) + f"versions/{number}/download"
        files = list(info.get("files") or [])
        if info.get("type") == "file_set":
            root = Path(destination) if destination is not None else Path(safe_base_name(f"{model}-v{number}", "model"))
            base = root.resolve()
            for entry in files:
                target = contained(base, entry.get("relpath"))
                if target is None:
                    raise RunstoreError(
                        f"the server sent a file path outside the destination: {entry.get('relpath')!r}"
                    )
                _fetch(api, download, target, {"relpath": entry["relpath"]})
            return root
        sent = files[0].get("name") if files else ""
        file_name = safe_base_name(sent or model, "model")
        target = Path(destination) if destination is not None else Path(file_name)
        if destination is not None and (target.is_dir() or str(destination).endswith(("/", os.sep))):
            target = target / file_name
        return _fetch(api, download, target, {})
    finally:
        api.close()


def _fetch(api: Api, path: str, target: Path, params: dict[str, Any]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    response = api.call_raw("GET", path, params=params or None, stream=True)
    tmp = target.with_name(f".{target.name}.part")
    try:
        with open(tmp, "wb") as f:
            for chunk in response.iter_content(1 << 20):
                f.write(chunk)
    finally:
        response.close()
    os.replace(tmp, target)
    return target
