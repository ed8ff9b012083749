"""An index for the dashboards' refresh (`labelling.dashboards.gathering.gather_tasks`): a
project's done tasks with a `done_at`, from the day of the previous refresh on.

Partial on the very conditions of that query (done, `done_at` set), so the open and assigned
tasks the claim query churns through stay out of it, and keyed by project then `done_at`, so a
refresh reads the last day or two of one project instead of all its done tasks.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("labelling", "0008_dashboard_rollups"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                condition=models.Q(("done_at__isnull", False), ("state", "done")),
                fields=["project", "done_at"],
                name="task_done_idx",
            ),
        ),
    ]
