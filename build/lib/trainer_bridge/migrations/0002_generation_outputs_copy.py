"""Which request wrote a message, and which of its outputs it is, moves from the message's own
columns (`Message.generation_request`, `Message.output_index`) into GenerationOutput.

Runs before `annotations` drops those columns (its 0008 depends on this one). Backwards, the
columns are filled again from the outputs, so neither direction loses a link.
"""

from django.db import migrations
from django.db.models import F

BATCH = 2000


def forwards(apps, schema_editor) -> None:
    alias = schema_editor.connection.alias
    messages = apps.get_model("annotations", "Message")
    outputs = apps.get_model("trainer_bridge", "GenerationOutput")
    rows = (
        messages.objects.using(alias)
        .filter(generation_request__isnull=False)
        .order_by("generation_request_id", F("output_index").asc(nulls_last=True), "pk")
        .values_list("pk", "generation_request_id", "output_index")
    )
    batch = []
    request, next_index = None, 0
    for message_id, request_id, output_index in rows.iterator(chunk_size=BATCH):
        if request_id != request:
            request, next_index = request_id, 0
        if output_index is None:
            # The workers always wrote an index; a link without one (written by hand) is
            # numbered after its request's other outputs, as the new table needs one.
            output_index = next_index
        next_index = max(next_index, output_index + 1)
        batch.append(
            outputs(message_id=message_id, request_id=request_id, output_index=output_index)
        )
        if len(batch) == BATCH:
            outputs.objects.using(alias).bulk_create(batch)
            batch = []
    outputs.objects.using(alias).bulk_create(batch)


def backwards(apps, schema_editor) -> None:
    alias = schema_editor.connection.alias
    messages = apps.get_model("annotations", "Message")
    outputs = apps.get_model("trainer_bridge", "GenerationOutput")
    batch = []
    rows = (
        outputs.objects.using(alias)
        .order_by("pk")
        .values_list("message_id", "request_id", "output_index")
    )
    for message_id, request_id, output_index in rows.iterator(chunk_size=BATCH):
        batch.append(
            messages(pk=message_id, generation_request_id=request_id, output_index=output_index)
        )
        if len(batch) == BATCH:
            messages.objects.using(alias).bulk_update(batch, ["generation_request", "output_index"])
            batch = []
    messages.objects.using(alias).bulk_update(batch, ["generation_request", "output_index"])


class Migration(migrations.Migration):
    dependencies = [
        ("trainer_bridge", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
    ]
