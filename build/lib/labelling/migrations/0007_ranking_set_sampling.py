"""The link from a ranking set to the generation requests that sample it becomes labelling's
own table (it was the many-to-many `RankingSet.generation_requests` of `annotations`).

The links are copied here, before `annotations` drops its table (its 0008 depends on this one);
backwards they are copied into that table again.
"""

import django.db.models.deletion
from django.db import migrations, models

BATCH = 2000


def forwards(apps, schema_editor) -> None:
    alias = schema_editor.connection.alias
    old = apps.get_model("annotations", "RankingSet").generation_requests.through
    new = apps.get_model("labelling", "RankingSetSampling")
    rows = (
        old.objects.using(alias).order_by("pk").values_list("rankingset_id", "generationrequest_id")
    )
    batch = []
    for ranking_set_id, request_id in rows.iterator(chunk_size=BATCH):
        batch.append(new(ranking_set_id=ranking_set_id, generation_request_id=request_id))
        if len(batch) == BATCH:
            new.objects.using(alias).bulk_create(batch)
            batch = []
    new.objects.using(alias).bulk_create(batch)


def backwards(apps, schema_editor) -> None:
    alias = schema_editor.connection.alias
    old = apps.get_model("annotations", "RankingSet").generation_requests.through
    new = apps.get_model("labelling", "RankingSetSampling")
    rows = (
        new.objects.using(alias)
        .order_by("pk")
        .values_list("ranking_set_id", "generation_request_id")
    )
    batch = []
    for ranking_set_id, request_id in rows.iterator(chunk_size=BATCH):
        batch.append(old(rankingset_id=ranking_set_id, generationrequest_id=request_id))
        if len(batch) == BATCH:
            old.objects.using(alias).bulk_create(batch)
            batch = []
    old.objects.using(alias).bulk_create(batch)


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0007_promptreport"),
        ("labelling", "0006_task_autosave_pages"),
        ("trainer_bridge", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="RankingSetSampling",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "generation_request",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="ranking_set_samplings",
                        to="trainer_bridge.generationrequest",
                    ),
                ),
                (
                    "ranking_set",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="samplings",
                        to="annotations.rankingset",
                    ),
                ),
            ],
            options={
                "ordering": ["ranking_set", "generation_request"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("ranking_set", "generation_request"),
                        name="ranking_set_sampling_once",
                    )
                ],
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
