"""Run references: how URLs, request bodies and forms name a run.

A run is named by its UUID, by ``workspace/project/KEY-N``, or inside a known project by its human
id ``KEY-N``. :func:`parse_run_ref` reads every form; the URL converter uses the same patterns.
"""

import uuid as uuid_module
from dataclasses import dataclass

from django.db.models import Q

from tracker.params import ParameterError

UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SLUG_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
HUMAN_ID_PATTERN = r"[A-Z][A-Z0-9]{1,9}-[0-9]{1,18}"
MAX_NUMBER_DIGITS = 18  # any run number fits in 64 bits


@dataclass(frozen=True)
class RunRef:
    uuid: uuid_module.UUID | None = None
    workspace: str = ""
    project: str = ""
    key: str = ""
    number: int | None = None

    def q(self) -> Q:
        """A filter on Run for this reference."""
        if self.uuid is not None:
            return Q(uuid=self.uuid)
        q = Q(project__key=self.key, number=self.number)
        if self.workspace:
            q &= Q(project__workspace__slug=self.workspace, project__slug=self.project)
        return q


def parse_run_ref(ref, *, project=None, param: str | None = None) -> RunRef | None:
    """The run ``ref`` names, or None when it names none (or, with ``project``, none of that project).

    With ``param``, a run number beyond 64 bits is a 400 naming that parameter instead of None.
    """
    text = str(ref).strip()
    try:
        return RunRef(uuid=uuid_module.UUID(text))
    except ValueError:
        pass
    parts = text.split("/")
    if len(parts) == 3:
        workspace, project_slug, human = parts
    elif len(parts) == 1:
        workspace, project_slug, human = "", "", text
    else:
        return None
    key, _, number = human.rpartition("-")
    if not key or not number.isascii() or not number.isdigit():
        return None
    if project is not None:
        if key != project.key:
            return None
        if workspace and (workspace, project_slug) != (project.workspace.slug, project.slug):
            return None
    if len(number) > MAX_NUMBER_DIGITS:
        if param:
            raise ParameterError(param, f"{text[:40]!r} has a run number beyond 64 bits")
        return None
    return RunRef(workspace=workspace, project=project_slug, key=key, number=int(number))
