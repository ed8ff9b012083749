"""The request table takes this app's name, its queue index a name of its own, and its content
type this app's label, so the permissions granted on requests (the leads' group) and the admin's
history of them follow the model.

Only once `annotations` has let go of the model (its 0008): until then two models in Django's
state shared the table.
"""

from django.db import migrations


def content_type_to(source: str, target: str):
    def move(apps, schema_editor) -> None:
        content_types = apps.get_model("contenttypes", "ContentType").objects.using(
            schema_editor.connection.alias
        )
        if content_types.filter(app_label=target, model="generationrequest").exists():
            return  # already made for the target (a database that never had the old one)
        content_types.filter(app_label=source, model="generationrequest").update(app_label=target)

    return move


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0008_generation_requests_leave_for_trainer_bridge"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("trainer_bridge", "0002_generation_outputs_copy"),
    ]

    operations = [
        migrations.AlterModelTable(name="generationrequest", table=None),
        migrations.RenameIndex(
            model_name="generationrequest",
            new_name="generation_queue_idx",
            old_name="annotations_state_4c70ab_idx",
        ),
        migrations.RunPython(
            content_type_to("annotations", "trainer_bridge"),
            content_type_to("trainer_bridge", "annotations"),
        ),
    ]
