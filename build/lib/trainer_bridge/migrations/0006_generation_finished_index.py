"""An index for the dashboards' refresh (`labelling.dashboards.gathering.gather_generations`):
a project's finished generation requests (done or failed), from the day of the previous refresh
on.

Partial on `finished_at` being set, as that query reads no other (queued and running requests
stay out of it), and keyed by project then `finished_at`, so a refresh reads the last day or two
of one project instead of all its requests.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("trainer_bridge", "0005_training_run_idempotency_key"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="generationrequest",
            index=models.Index(
                condition=models.Q(("finished_at__isnull", False)),
                fields=["project", "finished_at"],
                name="generation_finished_idx",
            ),
        ),
    ]
