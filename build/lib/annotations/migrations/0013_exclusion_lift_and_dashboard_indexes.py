"""Lifting a trainer's exclusion, and two indexes for the dashboards.

`Ranking.excluded_by` names the exclusion that keeps a ranking out, so that lifting it counts
again exactly those rankings, not the ones a lead excluded one by one in the explorer.

`ranking_set_lowest_idx` serves the agreement page's lowest sets (complete sets in the list's
order, the span checked on the index entries); `message_human_turn_idx` serves the dashboards'
refresh, which reads the assistant turns trainers wrote since its last run. Both are indexes
only: on SQLite an added index leaves `annotations_message` and its triggers (0012) in place,
and the added column is a nullable foreign key on `annotations_ranking`, added in place.

Exclusions standing before this migration get their rankings named: the trainer's excluded
rankings since the exclusion's date, less those the audit log shows a lead excluded by hand.
"""

import django.db.models.deletion
from django.db import migrations, models


def name_excluded_rankings(apps, schema_editor):
    exclusions = apps.get_model("annotations", "AnnotatorExclusion")
    rankings = apps.get_model("annotations", "Ranking")
    entries = apps.get_model("annotations", "AuditEntry")
    for exclusion in exclusions.objects.filter(lifted_at__isnull=True).order_by("-since"):
        by_hand = set()
        targets = entries.objects.filter(
            project_id=exclusion.project_id, action="ranking.exclude"
        ).values_list("target", flat=True)
        for target in targets:  # "ranking <id> by <trainer> (set <id>)"
            number = target.split(" ")[1] if target.startswith("ranking ") else ""
            if number.isdigit():
                by_hand.add(int(number))
        rankings.objects.filter(
            ranking_set__project_id=exclusion.project_id,
            annotator_id=exclusion.annotator_id,
            created_at__gte=exclusion.since,
            is_excluded=True,
            excluded_by__isnull=True,
        ).exclude(pk__in=by_hand).update(excluded_by=exclusion)


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0012_message_parent_triggers_again"),
    ]

    operations = [
        migrations.AddField(
            model_name="ranking",
            name="excluded_by",
            field=models.ForeignKey(
                blank=True,
                help_text="The trainer's exclusion that excluded it; empty when excluded by hand.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="rankings",
                to="annotations.annotatorexclusion",
            ),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("author_user__isnull", False), ("role", "assistant")),
                fields=["created_at"],
                name="message_human_turn_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="rankingset",
            index=models.Index(
                condition=models.Q(("agreement__isnull", False), ("state", "complete")),
                fields=["project", "agreement", "id", "completed_at"],
                name="ranking_set_lowest_idx",
            ),
        ),
        migrations.RunPython(name_excluded_rankings, migrations.RunPython.noop),
    ]
