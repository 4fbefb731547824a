"""``init_run``: check the options, find or create the run, start its queue and workers."""

from __future__ import annotations

import os
import time
import uuid as uuid_module
from typing import Any

from . import ci
from ._internal import bug, warn
from ._internal.api import Api, decode, is_quota_error
from ._internal.queue import QueueDir
from ._internal.sender import Sender, describe_block, quota_block
from .config import MODES, Settings, env_float, make_api, new_queue_dir, queues_root, run_ref
from .exceptions import ApiError, ConfigurationError, NetworkError
from .lifecycle import register
from .run import Run


def last_steps_of(api: Api, ref: str) -> dict[str, int]:
    fields = api.call("GET", f"runs/{ref}/attributes")["fields"]
    steps = {}
    for field in fields:
        value = field.get("value")
        if field.get("type", "").endswith("_series") and isinstance(value, dict) and value.get("last_step") is not None:
            steps[field["path"]] = int(value["last_step"])
    return steps


def sync_leftovers(api: Api, run_uuid: str) -> None:
    """Deliver what earlier processes on this machine left queued for this run (crash, Ctrl-C)."""
    root = queues_root()
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        qdir = QueueDir(path)
        try:
            meta = qdir.read_meta()
        except (OSError, ValueError):
            continue
        if meta.get("run_uuid") != run_uuid or not qdir.try_lock():
            continue
        try:
            # A quota that refuses what is left is reported, not waited for: the new run starts at once.
            sender = Sender(qdir, Api(api.url, api.token), wait_on_quota=False)
            if sender.drain(deadline=time.monotonic() + 120):
                sender.remove_queue()
                warn(f"runstore: delivered operations left queued in {path}", level=20)
        except Exception as exc:  # noqa: BLE001
            warn(f"runstore: could not deliver what {path} holds ({exc}); try `runstore sync`")
        finally:
            qdir.unlock()


def _create_run(api: Api, create: dict[str, Any]) -> Any:
    deadline = env_float("RUNSTORE_INIT_TIMEOUT", 15.0)
    try:
        return api.call_raw("POST", "runs/", body=create, deadline=deadline)
    except ApiError as exc:
        # Processes starting together race to create the project; the loser sees
        # "already exists" and succeeds on a second try.
        if exc.status == 400 and "already exists" in exc.message:
            time.sleep(0.2)
            return api.call_raw("POST", "runs/", body=create, deadline=deadline)
        raise


def init_run(
    project: str | None = None,
    api_token: str | None = None,
    url: str | None = None,
    name: str | None = None,
    description: str | None = None,
    tags: list[str] | str | None = None,
    mode: str | None = None,
    with_id: str | None = None,
    custom_run_id: str | None = None,
    capture_stdout: bool = True,
    capture_stderr: bool = True,
    capture_hardware_metrics: bool = True,
    capture_source: bool = True,
    capture_environment: bool = True,
    flush_period: float = 1.0,
    monitoring_namespace: str = "monitoring",
    stall_timeout: float | None = None,
) -> Run:
    """Start (or resume, with ``with_id``) a run; see the README for every option and environment variable.

    In async mode a new run is not waited for: its identity is made here (a ``custom_run_id``) and
    the sender creates it on the server when the server first answers, exactly once. ``stall_timeout``
    (``RUNSTORE_STALL_TIMEOUT``, 30 s): at exit, how long to wait for the server without any progress
    before leaving the rest on disk for ``runstore sync``."""
    mode = mode or os.environ.get("RUNSTORE_MODE") or "async"
    if mode not in MODES:
        raise ConfigurationError(f"mode={mode!r}; expected one of {', '.join(MODES)}")
    project = project or os.environ.get("RUNSTORE_PROJECT")
    custom_run_id = custom_run_id or os.environ.get("RUNSTORE_CUSTOM_RUN_ID") or None
    if isinstance(tags, str):
        tags = [tags]
    tags = list(tags or [])
    if project is not None and project.count("/") != 1:
        raise ConfigurationError(f"project={project!r}; expected 'workspace/project'")
    if not isinstance(flush_period, (int, float)) or flush_period <= 0:
        raise ConfigurationError("flush_period must be a positive number of seconds")
    settings = Settings.from_env(stall_timeout=stall_timeout)
    meta: dict[str, Any]
    info: dict[str, Any] = {}
    create: dict[str, Any] = {"project": project, "name": name or "", "description": description or "", "tags": tags}
    if custom_run_id:
        create["custom_run_id"] = custom_run_id

    if mode == "debug":
        run = Run(mode="debug", info={"id": "DEBUG-0", "project": project}, settings=settings)
    elif mode == "read-only":
        if not with_id:
            raise ConfigurationError("mode='read-only' needs with_id= (a run id such as 'VIS-12')")
        api = make_api(url, api_token)
        info = api.call("GET", f"runs/{run_ref(with_id, project)}/")
        return Run(mode="read-only", info=info, api=api)
    elif mode == "offline":
        if not with_id and not project:
            raise ConfigurationError("no project: pass project='workspace/project' or set RUNSTORE_PROJECT")
        meta = {
            "url": url or os.environ.get("RUNSTORE_URL"),
            "stream": uuid_module.uuid4().hex,
            "project": project,
            "mode": mode,
            "created": time.time(),
        }
        if with_id:
            meta["run_ref"] = run_ref(with_id, project)
        else:
            create.setdefault("custom_run_id", f"offline-{uuid_module.uuid4().hex}")
            meta["create"] = create
        run = Run(
            mode="offline",
            info={"project": project},
            qdir=new_queue_dir(meta),
            flush_period=flush_period,
            server_steps=bool(with_id),
            settings=settings,
        )
    else:
        api = make_api(url, api_token)
        stream = uuid_module.uuid4().hex
        meta = {"url": api.url, "stream": stream, "project": project, "mode": mode, "created": time.time()}
        last_steps: dict[str, int] = {}
        server_steps = False
        refused: dict[str, Any] | None = None  # the quota that refused to create the run
        if with_id:
            info = api.call("GET", f"runs/{run_ref(with_id, project)}/")
            sync_leftovers(api, info["uuid"])
            last_steps = last_steps_of(api, info["uuid"])
            if info.get("state") != "running":
                api.call("PATCH", f"runs/{info['uuid']}/", body={"state": "running"})
        elif mode == "async":
            if not project:
                raise ConfigurationError("no project: pass project='workspace/project' or set RUNSTORE_PROJECT")
            # Nothing waits for the server: the sender creates the run when it first answers. The
            # custom_run_id makes that creation idempotent (a retry gets the same run back).
            create.setdefault("custom_run_id", str(uuid_module.uuid4()))
            meta["create"] = create
            # A given custom_run_id may name a run other processes already logged to: its series'
            # last steps are unknown here, so automatic steps are left to the server.
            server_steps = bool(custom_run_id)
        else:
            if not project:
                raise ConfigurationError("no project: pass project='workspace/project' or set RUNSTORE_PROJECT")
            try:
                response = _create_run(api, create)
                info = decode(response)
                if response.status_code == 200:  # an existing run with this custom_run_id
                    sync_leftovers(api, info["uuid"])
                    last_steps = last_steps_of(api, info["uuid"])
            except NetworkError as exc:
                # Keep training: the sender creates the run once the server answers.
                warn(
                    f"runstore: the server is unreachable ({exc}); logging to disk, the run is created when it answers"
                )
                create.setdefault("custom_run_id", f"deferred-{uuid_module.uuid4().hex}")
                meta["create"] = create
            except ApiError as exc:
                if not is_quota_error(exc):
                    raise
                # The workspace's run or project quota is full: as for an unreachable server, training
                # goes on, logging to disk; the sender creates the run once the quota is raised. The
                # sender's own warning for this quota (same key) is not repeated.
                blocked = quota_block(exc)
                warn(
                    f"runstore: the server refuses to create the run: {exc.message} ({describe_block(blocked)}); "
                    "logging to disk, the run is created once the quota is raised",
                    once_key=f"quota:{stream}:{blocked['quota']}",
                )
                create.setdefault("custom_run_id", f"deferred-{uuid_module.uuid4().hex}")
                meta["create"] = create
                refused = blocked
        if info:
            meta["run_uuid"], meta["run_id"] = info["uuid"], info["id"]
        run = Run(
            mode=mode,
            info=info,
            api=api,
            qdir=new_queue_dir(meta),
            last_steps=last_steps,
            flush_period=flush_period,
            server_steps=server_steps,
            settings=settings,
        )
        if refused is not None and run._stats.blocked is None:
            # Known before the sender's first attempt: sync-mode calls do not wait for acknowledgements.
            run._stats.blocked = refused
    register(run)
    if mode != "read-only":
        run._start_capture(
            stdout=capture_stdout,
            stderr=capture_stderr,
            hardware=capture_hardware_metrics,
            source=capture_source,
            environment=capture_environment,
            namespace=monitoring_namespace,
        )
        try:
            ci.capture(run)  # a few environment variables: done here, so ci/ is set before init_run returns
        except Exception as exc:  # noqa: BLE001 - an odd environment never stops the training job
            bug(exc, "capturing the CI environment")
    return run
