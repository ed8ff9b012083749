"""Reports on prompts move to `annotations`: copy every row, ids kept, then drop the old table.

Backwards the old table comes back and the rows are copied into it again, so neither direction
loses a report.
"""

from django.core.management.color import no_style
from django.db import migrations
from django.db.models import OuterRef, Subquery

FIELDS = [
    "id",
    "project_id",
    "message_id",
    "reporter_id",
    "reason",
    "note",
    "state",
    "decided_by_id",
    "decided_at",
    "created_at",
]
BATCH = 2000


def copy_reports(source, target, schema_editor) -> None:
    connection = schema_editor.connection
    alias = connection.alias
    rows = source.objects.using(alias).order_by("pk").values(*FIELDS)
    batch = []
    for row in rows.iterator(chunk_size=BATCH):
        batch.append(target(**row))
        if len(batch) == BATCH:
            target.objects.using(alias).bulk_create(batch)
            batch = []
    target.objects.using(alias).bulk_create(batch)
    # bulk_create stamps created_at anew (the field is auto_now_add): give each report back its
    # own time, since the review queue is ordered by it.
    target.objects.using(alias).update(
        created_at=Subquery(
            source.objects.using(alias).filter(pk=OuterRef("pk")).values("created_at")[:1]
        )
    )
    if connection.vendor == "postgresql":
        # The rows kept their ids, so the target's id sequence never moved: start it after them,
        # or the next report would collide with a copied one.
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), [target]):
                cursor.execute(sql)


def forwards(apps, schema_editor) -> None:
    copy_reports(
        apps.get_model("labelling", "PromptReport"),
        apps.get_model("annotations", "PromptReport"),
        schema_editor,
    )


def backwards(apps, schema_editor) -> None:
    copy_reports(
        apps.get_model("annotations", "PromptReport"),
        apps.get_model("labelling", "PromptReport"),
        schema_editor,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0007_promptreport"),
        ("labelling", "0004_task_fk_indexes_covered_by_composites"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
        migrations.DeleteModel(name="PromptReport"),
    ]
