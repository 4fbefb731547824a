"""The public API snapshot: an accidental rename or signature change fails here.

After an intended change, regenerate with RUNSTORE_UPDATE_SNAPSHOT=1 and review the diff.
"""

import inspect
import os
from pathlib import Path

import runstore

SNAPSHOT = Path(__file__).with_name("public_api.txt")


def describe() -> str:
    lines = [f"__all__ = {sorted(runstore.__all__)}"]
    for name in (
        "init_run",
        "init_project",
        "register_model",
        "set_model_stage",
        "get_model_version",
        "download_model",
    ):
        lines.append(f"{name}{inspect.signature(getattr(runstore, name))}")
    for cls in (runstore.Run, runstore.Handler, runstore.Project, runstore.Table, runstore.File):
        for attr, member in sorted(vars(cls).items()):
            if attr.startswith("_") and attr not in (
                "__init__",
                "__getitem__",
                "__setitem__",
                "__delitem__",
                "__contains__",
                "__enter__",
                "__exit__",
            ):
                continue
            if attr == "__init__" and cls is not runstore.File:
                continue  # runs, handlers, projects and tables are made by the library, not by users
            if isinstance(member, (classmethod, staticmethod)):
                lines.append(f"{cls.__name__}.{attr}{inspect.signature(member.__func__)} [{type(member).__name__}]")
            elif isinstance(member, property):
                lines.append(f"{cls.__name__}.{attr} [property]")
            elif callable(member):
                lines.append(f"{cls.__name__}.{attr}{inspect.signature(member)}")
    return "\n".join(lines) + "\n"


def test_public_api_matches_the_snapshot():
    current = describe()
    if os.environ.get("RUNSTORE_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(current)
    assert current == SNAPSHOT.read_text(), "the public API changed; if intended, regenerate tests/public_api.txt"


def test_no_django_anywhere_in_the_client():
    source = Path(runstore.__file__).parent
    for file in source.rglob("*.py"):
        assert "django" not in file.read_text().lower(), file
