"""An index for the dashboards' refresh (`labelling.dashboards.gathering.gather_sets`): a
project's complete sets with a `completed_at`, from the day of the previous refresh on.

Partial on the very conditions of that query (complete, `completed_at` set), so it holds only
the sets the rollups count, and keyed by project then `completed_at`, so a refresh reads the
last day or two of one project instead of all its complete sets.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0013_exclusion_lift_and_dashboard_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="rankingset",
            index=models.Index(
                condition=models.Q(("completed_at__isnull", False), ("state", "complete")),
                fields=["project", "completed_at"],
                name="ranking_set_completed_idx",
            ),
        ),
    ]
