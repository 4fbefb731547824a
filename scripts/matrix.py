"""The framework-integration version matrix: each integration's tests against the newest and the oldest
release of its framework, each in a virtualenv of its own, built once and cached.

    .venv/bin/python scripts/matrix.py                 # every requirements file, build what is missing, test
    .venv/bin/python scripts/matrix.py lightning keras # only these integrations
    .venv/bin/python scripts/matrix.py --build-only    # build (or check) the virtualenvs, run no test

One requirements file per cell of the matrix: client/tests/integrations/requirements/<framework>-<edge>.txt.
Its `# tests:` line names the test modules it runs. The virtualenv lives outside the checkout, under
${RUNSTORE_VENV_CACHE:-~/.cache/runstore/venvs}/<sha256 of the file and the Python version>, so a fresh clone
(CI) reuses it; it counts as built once its `.complete` marker exists (an interrupted build is redone), and a
lock keeps two builds of one virtualenv from racing. The client is installed into it from client/ (editable,
without dependencies) on every run, so the tests always see this checkout's code.

One live Runstore server (client/tests/conftest.py's, on SQLite) serves every cell; the cells' pytest runs
find it through RUNSTORE_TEST_SERVER_URL / RUNSTORE_TEST_SERVER_TOKEN (client/tests/integrations/conftest.py).
Each cell writes var/test-reports/matrix-<cell>.xml, which scripts/test.sh counts.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fcntl
import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "client"
REQUIREMENTS = CLIENT / "tests" / "integrations" / "requirements"
REPORTS = REPO / "var" / "test-reports"
UV = str(REPO / ".venv" / "bin" / "uv")
PYTHON = str(REPO / ".venv" / "bin" / "python")
CACHE = Path(os.environ.get("RUNSTORE_VENV_CACHE", Path.home() / ".cache" / "runstore" / "venvs"))
CELL_TIMEOUT = float(os.environ.get("RUNSTORE_MATRIX_CELL_TIMEOUT", "600"))
PRINT_LOCK = threading.Lock()
BUILD_TIMEOUT = float(os.environ.get("RUNSTORE_MATRIX_BUILD_TIMEOUT", "1800"))

# Checks, in the cell's virtualenv, that the framework versions installed satisfy the ranges the
# client's extra claims (`pip install 'runstore[lightning]'`); the xgboost cells install xgboost-cpu,
# the same package without the CUDA runtime, under the same version number.
EXTRA_CHECK = r"""
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from packaging.requirements import Requirement
extra, failures = sys.argv[1], []
for line in requires("runstore") or []:
    req = Requirement(line)
    if req.marker is None or not req.marker.evaluate({"extra": extra}):
        continue
    for name in (req.name, req.name + "-cpu"):
        try:
            installed = version(name)
            break
        except PackageNotFoundError:
            installed = None
    if installed is None or not req.specifier.contains(installed, prereleases=True):
        failures.append(f"runstore[{extra}] claims {req}, the cell has {installed}")
if failures:
    print("\n".join(failures))
sys.exit(1 if failures else 0)
"""


class Cell:
    def __init__(self, path: Path):
        self.path = path
        self.name = path.stem
        self.text = path.read_text()
        header = {}
        for line in self.text.splitlines():
            if line.startswith("# ") and ":" in line:
                key, _, value = line[2:].partition(":")
                header[key.strip()] = value.strip()
        self.extra = header.get("extra", "")
        self.tests = header.get("tests", "").split()
        pyver = subprocess.run(
            [PYTHON, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self.key = hashlib.sha256(f"python {pyver}\n{self.text}".encode()).hexdigest()[:24]
        self.venv = CACHE / self.key
        self.python = self.venv / "bin" / "python"
        self.build_seconds: float | None = None
        self.test_seconds: float | None = None
        self.result = "not run"


def uv_env() -> dict[str, str]:
    env = dict(os.environ)
    # torch==2.13.0 is a CPU build in a local wheel folder (pip's find-links here); from the index it
    # would be a CUDA build of several GB.
    links = [p for p in (env.get("PIP_FIND_LINKS", "") + " /opt/wheels").split() if Path(p).is_dir()]
    if links:
        env["UV_FIND_LINKS"] = ",".join(dict.fromkeys(links))
    env.pop("VIRTUAL_ENV", None)
    return env


def build(cell: Cell) -> None:
    """Build the cell's virtualenv unless a complete one is cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{cell.key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (cell.venv / ".complete").exists():
            return
        started = time.monotonic()
        shutil.rmtree(cell.venv, ignore_errors=True)
        env = uv_env()
        subprocess.run([UV, "venv", "--quiet", "--python", PYTHON, str(cell.venv)], check=True, env=env)
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
            requirements.write(cell.text)
            requirements.flush()
            subprocess.run(
                # --compile-bytecode: each test run then imports the framework from .pyc files, even where
                # PYTHONDONTWRITEBYTECODE keeps Python from caching them (a cold import of mlflow's server is ~10 s).
                [UV, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(cell.python)]
                + ["-r", requirements.name]
                + ["-e", f"{CLIENT}[extras]"],
                check=True,
                env=env,
                timeout=BUILD_TIMEOUT,
            )
        (cell.venv / "requirements.txt").write_text(cell.text)
        (cell.venv / ".complete").touch()
        cell.build_seconds = time.monotonic() - started


def prune(days: float = 30) -> None:
    """Remove the matrix's virtualenvs that no run used for ``days`` (old pins leave them behind)."""
    limit = time.time() - days * 86400
    for marker in CACHE.glob("*/.matrix-last-used"):
        if marker.stat().st_mtime < limit:
            shutil.rmtree(marker.parent, ignore_errors=True)


def install_client(cell: Cell) -> None:
    """This checkout's client, editable, into the cached virtualenv (its dependencies are already there)."""
    (cell.venv / ".matrix-last-used").touch()
    # Installed already from this checkout with this pyproject.toml (the extras' ranges): nothing to do.
    stamp = f"{CLIENT}\n{hashlib.sha256((CLIENT / 'pyproject.toml').read_bytes()).hexdigest()}\n"
    marker = cell.venv / ".matrix-client"
    if not (marker.exists() and marker.read_text() == stamp):
        subprocess.run(
            [UV, "pip", "install", "--quiet", "--no-deps", "--python", str(cell.python), "-e", str(CLIENT)],
            check=True,
            env=uv_env(),
        )
        marker.write_text(stamp)
    if cell.extra:
        subprocess.run([str(cell.python), "-c", EXTRA_CHECK, cell.extra], check=True)


def load_server_class() -> type:
    spec = importlib.util.spec_from_file_location("runstore_client_conftest", CLIENT / "tests" / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Server  # type: ignore[no-any-return]


def run_tests(cell: Cell, server_url: str, token: str, extra_args: list[str]) -> bool:
    REPORTS.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "RUNSTORE_TEST_SERVER_URL": server_url,
        "RUNSTORE_TEST_SERVER_TOKEN": token,
        "KERAS_BACKEND": "torch",
        "MPLBACKEND": "Agg",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
        "OMP_NUM_THREADS": "2",
    }
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    tests = [f"tests/integrations/{name}" for name in cell.tests]
    command = [str(cell.python), "-m", "pytest", *tests, "-p", "no:cacheprovider", "-q"]
    command += [f"--junitxml={REPORTS / f'matrix-{cell.name}.xml'}", "-o", f"junit_suite_name=matrix-{cell.name}"]
    started = time.monotonic()
    try:
        result = subprocess.run(
            command + extra_args,
            cwd=CLIENT,
            env=env,
            timeout=CELL_TIMEOUT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ok, output = result.returncode == 0, result.stdout
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        output += f"\nmatrix: {cell.name}: over {CELL_TIMEOUT:.0f} s, stopped"
        ok = False
    cell.test_seconds = time.monotonic() - started
    with PRINT_LOCK:  # one cell's output in one block, whichever finishes first
        print(f"\n=== matrix: {cell.name} ({', '.join(cell.tests)}) ===\n{output.rstrip()}", flush=True)
    # A test skipped in its own cell means the framework did not import: a failure of the cell.
    try:
        suites = list(ET.parse(REPORTS / f"matrix-{cell.name}.xml").getroot().iter("testsuite"))
    except (OSError, ET.ParseError):
        return False
    skipped = sum(int(suite.get("skipped", 0)) for suite in suites)
    if skipped:
        print(f"matrix: {cell.name}: {skipped} test(s) skipped in the cell made for them", flush=True)
    return ok and skipped == 0 and sum(int(suite.get("tests", 0)) for suite in suites) > 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("frameworks", nargs="*", help="only these (e.g. lightning keras); default: all")
    parser.add_argument("--edge", choices=["newest", "oldest"], help="only the newest or the oldest releases")
    parser.add_argument("--build-only", action="store_true", help="build the virtualenvs, run no test")
    parser.add_argument("--jobs", type=int, default=2, help="virtualenvs built at once (default 2)")
    parser.add_argument("--test-jobs", type=int, default=2, help="cells tested at once (default 2)")
    args, pytest_args = parser.parse_known_args()

    # `timeout` in scripts/test.sh sends SIGTERM: unwind, so the running cell and the server are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(124))
    started = time.monotonic()
    cells = [Cell(p) for p in sorted(REQUIREMENTS.glob("*.txt"))]
    cells = [c for c in cells if not args.frameworks or c.name.rsplit("-", 1)[0] in args.frameworks]
    cells = [c for c in cells if not args.edge or c.name.endswith(f"-{args.edge}")]
    if not cells:
        print("matrix: no requirements file matches", file=sys.stderr)
        return 2

    failed: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        builds = {pool.submit(build, cell): cell for cell in cells}
        for future in concurrent.futures.as_completed(builds):
            cell = builds[future]
            try:
                future.result()
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                cell.result = f"build failed: {exc}"
                failed.append(cell.name)
                continue
            try:
                install_client(cell)
            except subprocess.CalledProcessError as exc:
                cell.result = f"client install or extra check failed: {exc}"
                failed.append(cell.name)
                continue
            cell.result = "built"
    built = time.monotonic()
    if not args.frameworks and not args.edge:
        prune()

    if not args.build_only:
        Server = load_server_class()
        with tempfile.TemporaryDirectory(prefix="runstore-matrix-") as tmp:
            server = Server(Path(tmp))
            server.setup()
            server.start()
            try:
                ready = [cell for cell in cells if cell.result == "built"]
                with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.test_jobs)) as pool:
                    runs = {pool.submit(run_tests, cell, server.url, server.token, pytest_args): cell for cell in ready}
                    for future in concurrent.futures.as_completed(runs):
                        cell = runs[future]
                        cell.result = "passed" if future.result() else "FAILED"
                        if cell.result != "passed":
                            failed.append(cell.name)
            finally:
                server.stop()

    print("\nmatrix summary")
    for cell in cells:
        build_time = f"built in {cell.build_seconds:.0f} s" if cell.build_seconds is not None else "cached"
        test_time = f"tests {cell.test_seconds:.0f} s" if cell.test_seconds is not None else ""
        print(f"  {cell.name:24} {cell.result:8} {build_time:16} {test_time:10} {cell.venv}")
    print(f"matrix: virtualenvs ready in {built - started:.0f} s, total {time.monotonic() - started:.0f} s")
    if failed:
        print(f"matrix: failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
