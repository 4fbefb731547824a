import django.db.models.deletion
import django.db.models.functions.text
import django.utils.timezone
from django.db import migrations, models


def fill_project(apps, schema_editor):
    Attribute = apps.get_model("runs", "Attribute")
    Run = apps.get_model("runs", "Run")
    for run_id, project_id in Run.objects.values_list("id", "project_id").iterator():
        Attribute.objects.filter(run_id=run_id).update(project_id=project_id)


def fill_catalog(apps, schema_editor):
    Attribute = apps.get_model("runs", "Attribute")
    ProjectField = apps.get_model("runs", "ProjectField")
    rows = Attribute.objects.values_list("project_id", "path", "type").distinct()
    ProjectField.objects.bulk_create(
        [ProjectField(project_id=p, path=path, type=t) for p, path, t in rows], ignore_conflicts=True
    )


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0001_initial"),
        ("runs", "0003_savedview"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="attribute", name="attr_path_float"),
        migrations.RemoveIndex(model_name="attribute", name="attr_path_int"),
        migrations.RemoveIndex(model_name="attribute", name="attr_path_datetime"),
        migrations.AddField(
            model_name="attribute",
            name="project",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="projects.project",
            ),
        ),
        migrations.RunPython(fill_project, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="attribute",
            name="project",
            field=models.ForeignKey(
                db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="projects.project"
            ),
        ),
        migrations.AddIndex(
            model_name="attribute",
            index=models.Index(fields=["project", "path", "float_value", "run"], name="attr_project_path_float"),
        ),
        migrations.AddIndex(
            model_name="attribute",
            index=models.Index(fields=["project", "path", "int_value", "run"], name="attr_project_path_int"),
        ),
        migrations.AddIndex(
            model_name="attribute",
            index=models.Index(fields=["project", "path", "datetime_value", "run"], name="attr_project_path_datetime"),
        ),
        migrations.AddIndex(
            model_name="attribute",
            index=models.Index(
                models.F("project"),
                models.F("path"),
                django.db.models.functions.text.Left("string_value", 200),
                models.F("run"),
                name="attr_project_path_string",
            ),
        ),
        migrations.CreateModel(
            name="ProjectField",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("path", models.CharField(max_length=512)),
                (
                    "type",
                    models.CharField(
                        choices=[
                            ("int", "Int"),
                            ("float", "Float"),
                            ("bool", "Bool"),
                            ("string", "String"),
                            ("datetime", "Datetime"),
                            ("string_set", "String Set"),
                            ("file", "File"),
                            ("file_set", "File Set"),
                            ("float_series", "Float Series"),
                            ("string_series", "String Series"),
                            ("file_series", "File Series"),
                        ],
                        max_length=16,
                    ),
                ),
                ("first_seen", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="fields", to="projects.project"
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("project", "path", "type"), name="project_field_unique")
                ],
            },
        ),
        migrations.RunPython(fill_catalog, migrations.RunPython.noop),
    ]
