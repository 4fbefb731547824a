"""Domain writes of the model registry. The UI, the REST API, the MLflow-compatible API and the admin
call these; each checks the actor's right through ``projects.permissions`` (on the model's home
project), owns its transaction and its side effects (audit entries, webhook events).

Rules:

* A model's name is unique in its workspace (``NAME_RE``: letters, digits, ``. _ + -``).
* A version is registered from a ``file`` or ``file_set`` field of a live run of the model's home
  project; registering under a new name creates the model in the run's project. The version copies
  the field's file list (its blobs are shared, not copied), so it downloads the same bytes forever.
* Versions are numbered 1, 2, 3… per model by an UPDATE of the model's counter, which holds the
  model row's lock until commit: concurrent registrations never share a number.
* Stages: none, staging, production, archived; any version may move to any other stage. With
  ``archive_existing``, moving a version to staging or production archives the model's other
  versions in that stage. "The production version" of a model is its newest version in production.
* Each stage change is audited (``model_version.stage_changed``) and announced to the home
  project's webhooks (``model_version.stage_changed``) once the transaction commits.
"""

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from projects import audit, permissions
from projects.models import Project

from .. import cleanup
from ..errors import ApiError
from ..models import Attribute, AttributeType, FileEntry, Run
from ..webhooks import events as webhook_events
from .models import ALIAS_RE, NAME_RE, ModelAlias, ModelVersion, ModelVersionFile, RegisteredModel, Stage

__all__ = [
    "create_model",
    "rename_model",
    "update_model",
    "move_model",
    "delete_model",
    "register_version",
    "update_version",
    "transition_stage",
    "delete_version",
    "set_alias",
    "delete_alias",
    "check_name",
    "check_stage",
]

REGISTRABLE_TYPES = (AttributeType.FILE, AttributeType.FILE_SET)


def check_name(name, field: str = "name") -> str:
    """``name`` as a model name, or a 400 naming ``field``."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ApiError(
            400,
            "invalid",
            f"{field}: a model name is 1-200 letters, digits, '.', '_', '+' or '-', starting with a letter or digit",
            field=field,
        )
    return name


def check_stage(stage, field: str = "stage") -> str:
    """``stage`` as one of :class:`Stage`, or a 400 naming ``field``."""
    if stage not in Stage.values:
        raise ApiError(
            400, "invalid", f"{field}: {stage!r} is not a stage; expected one of {', '.join(Stage.values)}", field=field
        )
    return stage


def _check_alias(alias) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.match(alias):
        raise ApiError(
            400,
            "invalid",
            "alias: 1-100 letters, digits, '_' or '-', starting with a letter",
            field="alias",
        )
    if alias.lower() == "latest" or alias.lower().startswith("v") and alias[1:].isdigit():
        raise ApiError(400, "invalid", f"alias: {alias!r} is reserved", field="alias")
    return alias


def _name_taken(project: Project, name: str) -> ApiError:
    return ApiError(409, "conflict", f"name: a model named {name!r} already exists in this workspace", field="name")


# --- models ------------------------------------------------------------------------


def create_model(actor, project: Project, name: str, description: str = "") -> RegisteredModel:
    """Create the model ``name`` at home in ``project`` (409 when the workspace has one of that name)."""
    permissions.require(actor, "write", project)
    check_name(name)
    try:
        with transaction.atomic():
            model = RegisteredModel.objects.create(
                workspace_id=project.workspace_id,
                project=project,
                name=name,
                description=description or "",
                created_by=actor,
            )
            audit.record("model.created", actor=actor, project=project, target=model)
    except IntegrityError:
        raise _name_taken(project, name) from None
    return model


def rename_model(actor, model: RegisteredModel, name: str) -> RegisteredModel:
    permissions.require(actor, "write", model.project)
    check_name(name)
    if name == model.name:
        return model
    old = model.name
    try:
        with transaction.atomic():
            RegisteredModel.objects.filter(pk=model.pk).update(name=name, updated_at=timezone.now())
            model.name = name
            audit.record("model.renamed", actor=actor, project=model.project, target=model, details={"from": old})
    except IntegrityError:
        model.name = old
        raise _name_taken(model.project, name) from None
    return model


def update_model(actor, model: RegisteredModel, *, description: str) -> RegisteredModel:
    permissions.require(actor, "write", model.project)
    with transaction.atomic():
        model.description = description or ""
        model.updated_at = timezone.now()
        model.save(update_fields=["description", "updated_at"])
        audit.record("model.updated", actor=actor, project=model.project, target=model)
    return model


def move_model(actor, model: RegisteredModel, project: Project) -> RegisteredModel:
    """Make ``project`` (of the model's workspace) the home of a model that has no version yet: a model
    created by name alone (MLflow's ``create_registered_model``) moves to the project of the run its
    first version comes from. Needs write on both projects."""
    permissions.require(actor, "write", model.project)
    permissions.require(actor, "write", project)
    if project.pk == model.project_id:
        return model
    if project.workspace_id != model.workspace_id:
        raise ApiError(400, "invalid", "project: a model stays in its workspace", field="project")
    with transaction.atomic():
        locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        if locked.versions.exists():
            raise ApiError(
                409,
                "conflict",
                f"project: the model {model.name!r} has versions; it stays in its project",
                field="project",
            )
        before = model.project
        RegisteredModel.objects.filter(pk=model.pk).update(project=project, updated_at=timezone.now())
        model.project = project
        audit.record("model.updated", actor=actor, project=project, target=model, details={"moved_from": before.slug})
    return model


def delete_model(actor, model: RegisteredModel) -> None:
    """Delete the model and all its versions (for those who may delete in its project); blobs that
    nothing else holds any more are removed after the commit."""
    permissions.require(actor, "delete", model.project)
    with transaction.atomic():
        candidates = set(ModelVersionFile.objects.filter(version__model=model).values_list("blob_id", flat=True))
        count = model.versions.count()
        audit.record(
            "model.deleted", actor=actor, project=model.project, target=str(model), details={"versions": count}
        )
        model.delete()
        keys = cleanup.delete_unreferenced_blobs(candidates)
    transaction.on_commit(lambda: cleanup._delete_keys(keys))


# --- versions ----------------------------------------------------------------------


def _model_for_registration(actor, project: Project, name: str) -> RegisteredModel:
    """The model ``name`` of ``project``'s workspace, created at home in ``project`` when missing."""
    model = RegisteredModel.objects.filter(workspace_id=project.workspace_id, name=name).first()
    if model is None:
        try:
            with transaction.atomic():
                model = RegisteredModel.objects.create(
                    workspace_id=project.workspace_id, project=project, name=name, created_by=actor
                )
                audit.record("model.created", actor=actor, project=project, target=model)
        except IntegrityError:  # registered concurrently under the same new name
            model = RegisteredModel.objects.get(workspace_id=project.workspace_id, name=name)
    if model.project_id != project.pk:
        raise ApiError(
            409,
            "conflict",
            f"name: the model {name!r} belongs to another project of this workspace; "
            "register runs of that project, or choose another name",
            field="name",
        )
    model.project = project
    return model


def register_version(
    actor,
    run: Run,
    field_path: str,
    model_name: str,
    stage: str | None = None,
    description: str = "",
    subpath: str = "",
) -> ModelVersion:
    """Register the ``file``/``file_set`` field ``field_path`` of ``run`` as the next version of the
    model ``model_name`` (created in the run's project when the workspace has none of that name),
    in ``stage`` (default none). Returns the version. With ``subpath``, only the files of the file set
    under that folder, their paths relative to it (MLflow's ``runs:/<run>/model``)."""
    permissions.require(actor, "write", run.project)
    check_name(model_name)
    stage = check_stage(stage or Stage.NONE)
    if run.deleted_at is not None or Run.objects.filter(pk=run.pk, deleted_at__isnull=False).exists():
        raise ApiError(409, "conflict", f"run: {run.human_id} is in the trash", field="run")
    attr = Attribute.objects.filter(run=run, path=field_path).first() if isinstance(field_path, str) else None
    if attr is None:
        raise ApiError(404, "not_found", f"path: run {run.human_id} has no field {field_path!r}", field="path")
    if attr.type not in REGISTRABLE_TYPES:
        raise ApiError(
            409,
            "wrong_type",
            f"path: field {field_path!r} is a {attr.type}; only a file or a file set can be registered",
            field="path",
            stored_type=attr.type,
        )
    entries = list(FileEntry.objects.filter(attribute=attr, step__isnull=True).order_by("relpath"))
    registered_path = attr.path
    subpath = (subpath or "").strip("/")
    if subpath:
        if attr.type != AttributeType.FILE_SET:
            raise ApiError(400, "invalid", f"subpath: field {field_path!r} is a single file", field="subpath")
        prefix = f"{subpath}/"
        entries = [e for e in entries if e.relpath.startswith(prefix)]
        for entry in entries:
            entry.relpath = entry.relpath[len(prefix) :]  # unsaved: the version's own relative path
        registered_path = f"{attr.path}/{subpath}"
        if not entries:
            raise ApiError(
                404, "not_found", f"subpath: field {field_path!r} has no file under {subpath!r}", field="subpath"
            )
    if not entries:
        raise ApiError(409, "empty", f"path: field {field_path!r} holds no file yet", field="path")
    with transaction.atomic():
        model = _model_for_registration(actor, run.project, model_name)
        # The UPDATE locks the model's row until commit: concurrent registrations number in turn.
        now = timezone.now()
        RegisteredModel.objects.filter(pk=model.pk).update(version_counter=F("version_counter") + 1, updated_at=now)
        number = RegisteredModel.objects.filter(pk=model.pk).values_list("version_counter", flat=True).get()
        version = ModelVersion.objects.create(
            model=model,
            version=number,
            run=run,
            run_label=run.human_id,
            field_path=registered_path,
            field_type=attr.type,
            description=description or "",
            size=sum(e.size for e in entries),
            file_count=len(entries),
            created_by=actor,
            created_at=now,
        )
        ModelVersionFile.objects.bulk_create(
            ModelVersionFile(
                version=version,
                relpath=e.relpath if attr.type == AttributeType.FILE_SET else "",
                name=e.name,
                blob_id=e.blob_id,
                mime_type=e.mime_type,
                size=e.size,
            )
            for e in entries
        )
        audit.record(
            "model_version.registered",
            actor=actor,
            project=run.project,
            target=version,
            details={"model": model.name, "version": number, "run": run.human_id, "path": registered_path},
        )
        if stage != Stage.NONE:
            _set_stage(actor, version, stage)
    return version


def update_version(actor, version: ModelVersion, *, description: str) -> ModelVersion:
    permissions.require(actor, "write", version.model.project)
    with transaction.atomic():
        version.description = description or ""
        version.save(update_fields=["description"])
        audit.record("model_version.updated", actor=actor, project=version.model.project, target=version)
    return version


def _set_stage(actor, version: ModelVersion, stage: str, **details) -> None:
    """Move ``version`` (its row locked by the caller's transaction) to ``stage``; audit and announce."""
    before = version.stage
    now = timezone.now()
    ModelVersion.objects.filter(pk=version.pk).update(stage=stage, stage_changed_by=actor, stage_changed_at=now)
    version.stage, version.stage_changed_by, version.stage_changed_at = stage, actor, now
    model = version.model
    audit.record(
        "model_version.stage_changed",
        actor=actor,
        project=model.project,
        target=version,
        details={"model": model.name, "version": version.version, "from": before, "to": stage, **details},
    )
    webhook_events.emit_model_stage_changed(
        model.project,
        model=model.name,
        version=version.version,
        from_stage=before,
        to_stage=stage,
        run=version.run if version.run_id and version.run and version.run.deleted_at is None else None,
        by=actor,
        **details,
    )


def transition_stage(actor, version: ModelVersion, stage: str, archive_existing: bool = False) -> ModelVersion:
    """Move ``version`` to ``stage``. With ``archive_existing`` and a target of staging or production,
    the model's other versions in that stage move to archived (each change audited and announced).
    Moving a version to the stage it is in changes nothing and announces nothing."""
    model = version.model
    permissions.require(actor, "write", model.project)
    stage = check_stage(stage)
    with transaction.atomic():
        # Every stage change of a model takes the model row's lock first: changes of one model run
        # in turn, so "archive the others" never races a concurrent promotion.
        RegisteredModel.objects.filter(pk=model.pk).update(updated_at=timezone.now())
        current = ModelVersion.objects.select_for_update().get(pk=version.pk)
        version.stage = current.stage
        if current.stage != stage:
            _set_stage(actor, version, stage)
        if archive_existing and stage in (Stage.STAGING, Stage.PRODUCTION):
            others = (
                ModelVersion.objects.select_for_update(of=("self",))
                .filter(model=model, stage=stage)
                .exclude(pk=version.pk)
                .select_related("run")
                .order_by("version")
            )
            for other in others:
                other.model = model
                _set_stage(actor, other, Stage.ARCHIVED, archived_by_version=version.version)
    return version


def delete_version(actor, version: ModelVersion) -> None:
    """Delete one version (for those who may delete in the model's project); its number is not reused."""
    model = version.model
    permissions.require(actor, "delete", model.project)
    with transaction.atomic():
        candidates = set(version.files.values_list("blob_id", flat=True))
        audit.record(
            "model_version.deleted",
            actor=actor,
            project=model.project,
            target=str(version),
            details={"model": model.name, "version": version.version, "stage": version.stage},
        )
        version.delete()
        keys = cleanup.delete_unreferenced_blobs(candidates)
    transaction.on_commit(lambda: cleanup._delete_keys(keys))


# --- aliases -----------------------------------------------------------------------


def set_alias(actor, version: ModelVersion, alias: str) -> ModelAlias:
    """Point ``alias`` of the version's model at ``version`` (moving it from another version)."""
    model = version.model
    permissions.require(actor, "write", model.project)
    _check_alias(alias)
    with transaction.atomic():
        RegisteredModel.objects.filter(pk=model.pk).update(updated_at=timezone.now())
        row, _ = ModelAlias.objects.update_or_create(
            model=model, alias=alias, defaults={"version": version, "created_by": actor, "created_at": timezone.now()}
        )
        audit.record(
            "model_alias.set",
            actor=actor,
            project=model.project,
            target=version,
            details={"model": model.name, "alias": alias, "version": version.version},
        )
    return row


def delete_alias(actor, model: RegisteredModel, alias: str) -> bool:
    """Remove ``alias`` from ``model``; False when it had none of that name."""
    permissions.require(actor, "write", model.project)
    with transaction.atomic():
        deleted, _ = ModelAlias.objects.filter(model=model, alias=alias).delete()
        if deleted:
            audit.record(
                "model_alias.deleted",
                actor=actor,
                project=model.project,
                target=str(model),
                details={"model": model.name, "alias": alias},
            )
    return bool(deleted)
