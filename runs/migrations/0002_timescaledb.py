from django.db import migrations


def forwards(apps, schema_editor):
    from runs.timescale import create_hypertable

    create_hypertable(schema_editor)


class Migration(migrations.Migration):
    # CREATE EXTENSION and create_hypertable run outside Django's schema model.
    atomic = True

    dependencies = [("runs", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False)]
