"""Memberships of the three old workspace roles become the new roles.

Before: a workspace membership (viewer, contributor, owner) held its actions on every project of the
workspace. Now a workspace owner keeps that through the ``all_projects_*`` permissions; a former
contributor or viewer becomes a workspace member with that same role granted on each project that
existed, so nobody loses or gains access to a project by the upgrade.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

OWNER = ["view_workspace", "write_workspace", "manage_workspace"] + [
    f"all_projects_{a}" for a in ("view", "export", "write", "delete", "manage")
]
MEMBER = ["view_workspace", "write_workspace"]
PROJECT = {
    "viewer": ["view_project", "export_project"],
    "contributor": ["view_project", "export_project", "write_project", "delete_runs_project"],
}


def forwards(apps, schema_editor):
    config = apps.get_app_config("projects")
    # create_permissions skips an app config without models_module (a migration's stub has none);
    # put back whatever was there, so a caller's registry is left as it was.
    previous = getattr(config, "models_module", None)
    config.models_module = previous or True
    try:
        create_permissions(config, apps=apps, verbosity=0)
    finally:
        config.models_module = previous
    Permission = apps.get_model("auth", "Permission")
    Membership = apps.get_model("projects", "Membership")
    Project = apps.get_model("projects", "Project")
    ProjectGrant = apps.get_model("projects", "ProjectGrant")
    WorkspacePerm = apps.get_model("projects", "WorkspaceUserObjectPermission")
    ProjectPerm = apps.get_model("projects", "ProjectUserObjectPermission")
    perms = {p.codename: p for p in Permission.objects.filter(content_type__app_label="projects")}
    for membership in Membership.objects.filter(user__isnull=False):
        old = membership.role
        wanted = OWNER if old == "owner" else MEMBER
        WorkspacePerm.objects.filter(content_object_id=membership.workspace_id, user_id=membership.user_id).delete()
        for name in wanted:
            WorkspacePerm.objects.get_or_create(
                content_object_id=membership.workspace_id, user_id=membership.user_id, permission=perms[name]
            )
        if old in PROJECT:
            membership.role = "member"
            membership.save(update_fields=["role"])
            for project in Project.objects.filter(workspace_id=membership.workspace_id):
                ProjectGrant.objects.get_or_create(
                    project=project, user_id=membership.user_id, deny=False, defaults={"role": old}
                )
                for name in PROJECT[old]:
                    ProjectPerm.objects.get_or_create(
                        content_object_id=project.pk, user_id=membership.user_id, permission=perms[name]
                    )


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0003_teams_roles_quotas_audit"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
