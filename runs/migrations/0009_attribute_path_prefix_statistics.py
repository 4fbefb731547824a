from django.db import migrations

# PostgreSQL estimates "path = p AND string_prefix = v" as if the two were independent, so it
# guessed ~700 rows where 20,000 match and planned nested loops over them; a multi-column MCV
# list gives it the real frequencies of (path, value) pairs (bench/README.md, query engine).
CREATE = """
CREATE STATISTICS IF NOT EXISTS runs_attribute_path_prefix_stats (mcv) ON path, string_prefix FROM runs_attribute;
ALTER STATISTICS runs_attribute_path_prefix_stats SET STATISTICS 1000;
"""
DROP = "DROP STATISTICS IF EXISTS runs_attribute_path_prefix_stats;"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("runs", "0008_attribute_string_prefix")]

    operations = [migrations.RunPython(create, drop)]
