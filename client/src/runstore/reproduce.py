"""``runstore reproduce RUN`` and ``runstore artifacts verify RUN [PATH]``: recreate a run, check its data.

A run records what it needs to be recreated (``init_run`` captures it unless told not to):

* ``source_code/git/*``: the repository root, remote, commit and whether the tree was dirty; the
  uncommitted changes of tracked files as ``source_code/diff`` (a patch);
* ``source_code/command`` and ``source_code/working_dir``: the interpreter and ``sys.argv``;
* ``environment/packages`` (a requirements file, with direct references for packages installed
  from a path or a VCS) and ``environment/python_version``;
* ``<field>/hash|files|location`` of every ``track_files`` field: the data it read.

``reproduce`` turns that into steps (clone and check out the commit, apply the patch, build a
virtualenv with the packages, check the data, run the command line with the interpreter of that
virtualenv) and prints them as shell commands; ``--apply DIR`` carries them out in ``DIR`` (which
must be new or empty) and then runs the command, unless ``--no-run``.

``artifacts verify`` re-hashes local data the way ``track_files`` did and lists the files added,
removed and changed since the run recorded it (exit status 0 same, 1 different)."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ._internal.api import Api
from ._internal.artifacts import version_hash
from ._internal.reader import Reader, field_value
from ._internal.writer import sha256_file
from .config import make_api, run_ref
from .exceptions import RunstoreError

__all__ = ["Plan", "Verification", "add_parser", "plan", "verify"]


class ReproduceError(RunstoreError):
    """A run cannot be recreated as asked (nothing recorded, a step failed, the directory is not new)."""


# -- reading what the run recorded -----------------------------------------------------------------
def _fields(api: Api, ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    info = dict(api.call("GET", f"runs/{ref}/"))
    fields = {f["path"]: field_value(f) for f in api.call("GET", f"runs/{ref}/attributes")["fields"]}
    return info, fields


def tracked_fields(fields: dict[str, Any]) -> list[str]:
    """The paths of the run's ``track_files`` fields (those with a hash and a file count)."""
    return sorted(
        path[: -len("/hash")]
        for path in fields
        if path.endswith("/hash") and f"{path[: -len('/hash')]}/file_count" in fields
    )


def _local_path(location: Any) -> Path | None:
    if not isinstance(location, str) or not location.startswith("file:"):
        return None
    return Path(unquote(urlparse(location).path))


# -- the plan ---------------------------------------------------------------------------------------
@dataclass
class Step:
    title: str
    commands: list[list[str]] = field(default_factory=list)
    cwd: Path | None = None
    notes: list[str] = field(default_factory=list)
    download: tuple[str, Path] | None = None  # (field, destination) fetched before the commands


@dataclass
class Plan:
    """What recreates a run, in order; ``command`` is the training command line, ``command_cwd`` where it runs."""

    ref: str
    directory: Path
    steps: list[Step]
    command: list[str]
    command_cwd: Path
    parameters: dict[str, Any]
    warnings: list[str]

    def render(self) -> str:
        lines = [f"# Recreate run {self.ref} in {self.directory}"]
        lines += [f"# warning: {w}" for w in self.warnings]
        for number, step in enumerate(self.steps, 1):
            lines += ["", f"# {number}. {step.title}"]
            lines += [f"#    {note}" for note in step.notes]
            if step.download is not None:
                name, dest = step.download
                lines.append(_shell(["runstore", "download", self.ref, name, str(dest)]))
            for command in step.commands:
                prefix = f"cd {shlex.quote(str(step.cwd))} && " if step.cwd else ""
                lines.append(prefix + _shell(command))
        lines += ["", f"# {len(self.steps) + 1}. Run it"]
        if self.parameters:
            lines.append("#    recorded parameters: " + ", ".join(f"{k}={v!r}" for k, v in self.parameters.items()))
        lines.append(f"cd {shlex.quote(str(self.command_cwd))} && {_shell(self.command)}")
        return "\n".join(lines) + "\n"


def _shell(command: Iterable[str]) -> str:
    return " ".join(shlex.quote(part) for part in command)


def _interpreter(version: Any, chosen: str | None) -> tuple[str, str | None]:
    """The Python to build the virtualenv with, and a warning when it is not the recorded version."""
    if chosen:
        return chosen, None
    if isinstance(version, str) and version.count(".") >= 1:
        major_minor = ".".join(version.split(".")[:2])
        found = shutil.which(f"python{major_minor}")
        if found:
            return found, None
        current = f"{sys.version_info.major}.{sys.version_info.minor}"
        if current != major_minor:
            return sys.executable, f"the run used Python {version}; no python{major_minor} on PATH, using {current}"
    return sys.executable, None


def _remap(path: str, old_root: str | None, new_root: Path) -> str:
    """``path`` under the recorded repository root, moved to the same place under ``new_root``."""
    if old_root and os.path.isabs(path):
        try:
            return str(new_root / Path(path).relative_to(old_root))
        except ValueError:
            return path
    return path


def plan(
    api: Api,
    ref: str,
    directory: str | os.PathLike[str],
    *,
    source: str | None = None,
    python: str | None = None,
    pip_args: list[str] | None = None,
) -> Plan:
    """What recreates run ``ref`` in ``directory`` (nothing is done; see :func:`apply`)."""
    info, fields = _fields(api, ref)
    ref = str(info.get("uuid") or ref)
    directory = Path(directory).resolve()
    warnings: list[str] = []
    steps: list[Step] = []
    work = directory / "source"
    commit = fields.get("source_code/git/commit")
    root = fields.get("source_code/git/root")
    if not commit:
        raise ReproduceError(
            f"run {ref} recorded no git commit (source_code/git/commit): it ran outside a git repository or with capture_source=False"
        )
    origin = source or fields.get("source_code/git/remote_url") or root
    if not origin:
        raise ReproduceError(f"run {ref} recorded neither a git remote nor the repository's path; pass --source")
    steps.append(
        Step(
            f"Source: commit {commit[:12]} of {origin}",
            [
                ["git", "clone", "--quiet", "--no-checkout", str(origin), str(work)],
                ["git", "-C", str(work), "checkout", "--quiet", "--detach", str(commit)],
            ],
            notes=[f"branch then: {fields['source_code/git/branch']}"] if fields.get("source_code/git/branch") else [],
        )
    )
    if fields.get("source_code/git/dirty"):
        if "source_code/diff" in fields:
            patch = directory / "run-files" / "diff.patch"
            steps.append(
                Step(
                    "The uncommitted changes the run had (source_code/diff)",
                    [["git", "-C", str(work), "apply", "--whitespace=nowarn", str(patch)]],
                    notes=["untracked files are not part of the patch"],
                    download=("source_code/diff", patch),
                )
            )
        else:
            warnings.append("the working tree was dirty but no diff was recorded: the source may differ")

    venv = directory / "venv"
    venv_python = venv / "bin" / "python"
    interpreter, warning = _interpreter(fields.get("environment/python_version"), python)
    if warning:
        warnings.append(warning)
    if "environment/packages" in fields:
        requirements = directory / "run-files" / "requirements.txt"
        uv = shutil.which("uv")
        if uv:
            commands = [
                [uv, "venv", "--quiet", "--python", interpreter, str(venv)],
                [
                    uv,
                    "pip",
                    "install",
                    "--quiet",
                    "--python",
                    str(venv_python),
                    "-r",
                    str(requirements),
                    *(pip_args or []),
                ],
            ]
        else:
            commands = [
                [interpreter, "-m", "venv", str(venv)],
                [str(venv_python), "-m", "pip", "install", "--quiet", "-r", str(requirements), *(pip_args or [])],
            ]
        steps.append(
            Step(
                f"Environment: Python {fields.get('environment/python_version', '?')} and the packages the run had",
                commands,
                download=("environment/packages", requirements),
            )
        )
    else:
        warnings.append("no package list was recorded (environment/packages): the virtualenv gets no packages")
        steps.append(Step("Environment: an empty virtualenv", [[interpreter, "-m", "venv", str(venv)]]))

    data = tracked_fields(fields)
    if data:
        step = Step("Data: check the data sets the run read are unchanged")
        for name in data:
            location = _local_path(fields.get(f"{name}/location"))
            step.notes.append(
                f"{name}: {fields.get(f'{name}/file_count')} files, {fields.get(f'{name}/size')} bytes, "
                f"sha256 {str(fields.get(f'{name}/hash'))[:16]}…"
            )
            target = [str(location)] if location else []
            step.commands.append(["runstore", "artifacts", "verify", ref, *target, "--field", name])
        steps.append(step)

    recorded = fields.get("source_code/command")
    if not recorded:
        raise ReproduceError(f"run {ref} recorded no command line (source_code/command)")
    argv = shlex.split(str(recorded))
    command = [str(venv_python), *(_remap(arg, root, work) for arg in argv[1:])]
    working_dir = fields.get("source_code/working_dir")
    command_cwd = Path(_remap(str(working_dir), root, work)) if working_dir else work
    if working_dir and not str(command_cwd).startswith(str(work)):
        warnings.append(f"the run started outside its repository ({working_dir}); the command runs there")
    parameters = {
        path[len("parameters/") :]: value for path, value in sorted(fields.items()) if path.startswith("parameters/")
    }
    return Plan(ref, directory, steps, command, command_cwd, parameters, warnings)


def apply(api: Api, planned: Plan, *, run: bool = True, out: Any = None) -> int:
    """Carry out ``planned``: each step's download and commands, then (``run``) the command line.

    Returns the exit status of the command (0 when it is not run); a failing step raises
    :class:`ReproduceError` naming it."""
    out = out or sys.stdout
    directory = planned.directory
    if directory.exists() and any(directory.iterdir()):
        raise ReproduceError(f"{directory} is not empty: --apply needs a new directory")
    (directory / "run-files").mkdir(parents=True, exist_ok=True)
    reader = Reader(api, planned.ref)
    for warning in planned.warnings:
        print(f"runstore: warning: {warning}", file=sys.stderr)
    for number, step in enumerate(planned.steps, 1):
        print(f"[{number}/{len(planned.steps)}] {step.title}", file=out, flush=True)
        if step.download is not None:
            name, dest = step.download
            got = reader.download(name, dest)
            if got != dest and got.is_file():
                got.replace(dest)
        for command in step.commands:
            if command[:3] == ["runstore", "artifacts", "verify"]:
                _verify_step(api, planned.ref, command, out)
                continue
            print("+ " + _shell(command), file=out, flush=True)
            result = subprocess.run(command, cwd=step.cwd, check=False)
            if result.returncode != 0:
                raise ReproduceError(
                    f"step {number} ({step.title}) failed: {_shell(command)} exited {result.returncode}"
                )
    if not run:
        print(f"ready; to run: cd {shlex.quote(str(planned.command_cwd))} && {_shell(planned.command)}", file=out)
        return 0
    print("+ " + _shell(planned.command), file=out, flush=True)
    env = {**os.environ, "VIRTUAL_ENV": str(directory / "venv")}
    env["PATH"] = f"{directory / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(planned.command, cwd=planned.command_cwd, env=env, check=False).returncode


def _verify_step(api: Api, ref: str, command: list[str], out: Any) -> None:
    """The data check of ``--apply``: reported, never fatal (the data may live elsewhere on this machine)."""
    name = command[command.index("--field") + 1]
    local = command[4] if len(command) > 6 else None
    if local is None or not Path(local).exists():
        print(
            f"  {name}: the recorded location {local or '(none)'} is not here; check it with "
            f"`runstore artifacts verify {ref} PATH --field {name}`",
            file=out,
        )
        return
    for result in verify(api, ref, local, field=name):
        print("  " + result.summary(), file=out)


# -- artifacts verify -----------------------------------------------------------------------------
@dataclass
class Verification:
    """Local data against the version a run recorded for ``field``."""

    field: str
    path: Path
    same: bool
    added: list[str]
    removed: list[str]
    changed: list[str]
    recorded_hash: str
    local_hash: str
    partial: bool = False  # the run recorded fewer file entries than files (over 10,000, or very long names)

    def summary(self) -> str:
        if self.same:
            return f"{self.field}: {self.path} is the recorded version ({self.local_hash[:16]}…)"
        counts = f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed"
        return f"{self.field}: {self.path} differs from the recorded version: {counts}" + (
            " (the run recorded a partial file list; the totals come from it)" if self.partial else ""
        )


def hash_tree(root: Path, *, workers: int = 4) -> list[tuple[str, str, int]]:
    """Every file's relative path, SHA-256 and size, as ``track_files`` records them (paths relative to
    the folder, or the file's name for a single file); hashed on ``workers`` threads."""
    base = root if root.is_dir() else root.parent
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hashes = list(pool.map(sha256_file, files))
    return [(f.relative_to(base).as_posix(), sha256, size) for f, (sha256, size) in zip(files, hashes, strict=True)]


def overall_hash(entries: Iterable[tuple[str, str, int]]) -> str:
    """The version hash as ``track_files`` computes it (one file: its own SHA-256)."""
    return version_hash(entries)


def verify(
    api: Api, ref: str, path: str | os.PathLike[str] | None = None, *, field: str | None = None
) -> list[Verification]:
    """Compare local data with what run ``ref`` recorded: one result per checked field.

    Without ``path`` every tracked field is checked at its recorded location; with ``path``, the field
    named by ``field`` (needed when the run tracked several)."""
    _, fields = _fields(api, ref)
    names = tracked_fields(fields)
    if field is not None:
        if field not in names:
            raise ReproduceError(f"run {ref} has no tracked data field {field!r}; it has: {', '.join(names) or 'none'}")
        names = [field]
    elif path is not None and len(names) > 1:
        raise ReproduceError(f"run {ref} tracked several data fields ({', '.join(names)}): name one with --field")
    if not names:
        raise ReproduceError(f"run {ref} tracked no data (no field set by track_files)")
    results = []
    for name in names:
        local = Path(path) if path is not None else _local_path(fields.get(f"{name}/location"))
        if local is None or not local.exists():
            raise ReproduceError(f"{name}: {local or 'the recorded location'} does not exist here; pass the local PATH")
        entries = hash_tree(local.resolve())
        recorded: dict[str, tuple[str, int]] = {}
        for entry in fields.get(f"{name}/files") or ():
            relpath, sha256, size = str(entry).rsplit(":", 2)
            recorded[relpath] = (sha256, int(size))
        current = {relpath: (sha256, size) for relpath, sha256, size in entries}
        local_hash = overall_hash(entries)
        recorded_hash = str(fields.get(f"{name}/hash"))
        results.append(
            Verification(
                field=name,
                path=local,
                same=local_hash == recorded_hash,
                added=sorted(set(current) - set(recorded)),
                removed=sorted(set(recorded) - set(current)),
                changed=sorted(p for p in set(current) & set(recorded) if current[p] != recorded[p]),
                recorded_hash=recorded_hash,
                local_hash=local_hash,
                partial=len(recorded) < int(fields.get(f"{name}/file_count") or 0),
            )
        )
    return results


# -- the command line -------------------------------------------------------------------------------
def cmd_reproduce(args: argparse.Namespace) -> int:
    api = make_api(args.url, args.api_token)
    ref = run_ref(args.run, args.project)
    directory = args.apply or args.dir or "reproduce-" + args.run.replace("/", "-")
    planned = plan(
        api, ref, directory, source=args.source, python=args.python, pip_args=shlex.split(args.pip_args or "")
    )
    if not args.apply:
        sys.stdout.write(planned.render())
        return 0
    return apply(api, planned, run=not args.no_run)


def cmd_verify(args: argparse.Namespace) -> int:
    api = make_api(args.url, args.api_token)
    results = verify(api, run_ref(args.run, args.project), args.path, field=args.field)
    for result in results:
        print(result.summary())
        for label, paths in (("+", result.added), ("-", result.removed), ("~", result.changed)):
            for relpath in paths[: args.max_files]:
                print(f"  {label} {relpath}")
            if len(paths) > args.max_files:
                print(f"  {label} … {len(paths) - args.max_files} more")
    return 0 if all(r.same for r in results) else 1


def add_parser(sub: Any) -> None:
    reproduce = sub.add_parser(
        "reproduce",
        help="print (or with --apply carry out) what recreates a run: source, patch, virtualenv, data, command",
        description="Print the steps that recreate a run as shell commands; --apply DIR carries them out in a new "
        "directory and runs the recorded command line there (--no-run stops before it).",
    )
    reproduce.add_argument("run", help="VIS-12 (with --project), ws/proj/VIS-12 or a UUID")
    reproduce.add_argument("--project")
    reproduce.add_argument("--apply", metavar="DIR", help="carry the steps out in DIR (new or empty)")
    reproduce.add_argument("--dir", metavar="DIR", help="the directory the printed steps use (default reproduce-RUN)")
    reproduce.add_argument("--no-run", action="store_true", help="with --apply: prepare everything, do not run")
    reproduce.add_argument("--source", help="clone from here instead of the recorded remote or repository path")
    reproduce.add_argument("--python", help="interpreter for the virtualenv (default: pythonX.Y the run used)")
    reproduce.add_argument("--pip-args", help="extra arguments for the package install, e.g. '--find-links wheels/'")
    reproduce.set_defaults(func=cmd_reproduce)

    artifacts = sub.add_parser("artifacts", help="data a run tracked").add_subparsers(
        dest="artifacts_command", required=True
    )
    check = artifacts.add_parser(
        "verify",
        help="re-hash local data and list files added, removed or changed since the run recorded it",
        description="Exit status 0: the local data is the recorded version; 1: it differs; 2: usage error.",
    )
    check.add_argument("run", help="VIS-12 (with --project), ws/proj/VIS-12 or a UUID")
    check.add_argument("path", nargs="?", help="local data (default: the location the run recorded)")
    check.add_argument("--field", help="the tracked field, e.g. data/train (needed when the run tracked several)")
    check.add_argument("--project")
    check.add_argument("--max-files", type=int, default=50, help="file names listed per kind of change")
    check.set_defaults(func=cmd_verify, read_command=True)

    from .records import add_artifact_commands

    add_artifact_commands(artifacts)
