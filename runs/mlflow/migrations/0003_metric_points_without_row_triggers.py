import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("mlflow", "0002_logged_model"),
    ]

    operations = [
        migrations.AlterField(
            model_name="metric",
            name="run",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="runs.run",
            ),
        ),
    ]
