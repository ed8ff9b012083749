"""Generation requests now belong to `trainer_bridge`: the links to them leave the core tables.

By now the links are copied into their new tables (trainer_bridge 0002: which message is which
output of which request; labelling 0007: which requests sample which ranking set), so the
message's columns and the ranking sets' many-to-many table are dropped, and the request model
leaves this app's state. Its table and rows stay: trainer_bridge has taken them over.
Backwards the columns and the table come back empty, and those migrations fill them again.

SQLite drops a foreign-key column by rebuilding the table, which loses the triggers 0002 put on
it (a message and its parent in one conversation): they are made again after the rebuild, in
either direction.
"""

from django.db import migrations

# As in 0002_message_parent_same_conversation.
SQLITE_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS message_parent_same_conversation_{when}
BEFORE {event} ON annotations_message
FOR EACH ROW WHEN NEW.parent_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM annotations_message AS p
    WHERE p.id = NEW.parent_id AND p.conversation_id = NEW.conversation_id
)
BEGIN
    SELECT RAISE(ABORT, 'message_parent_same_conversation');
END;
"""


def sqlite_triggers_restore(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_TRIGGER.format(when="insert", event="INSERT"))
        schema_editor.execute(SQLITE_TRIGGER.format(when="update", event="UPDATE"))


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0007_promptreport"),
        ("labelling", "0007_ranking_set_sampling"),
        ("trainer_bridge", "0002_generation_outputs_copy"),
    ]

    operations = [
        # Backwards this runs last, after the columns came back.
        migrations.RunPython(migrations.RunPython.noop, sqlite_triggers_restore),
        migrations.RemoveConstraint(
            model_name="message",
            name="message_one_per_generation_output",
        ),
        migrations.RemoveField(
            model_name="message",
            name="generation_request",
        ),
        migrations.RemoveField(
            model_name="message",
            name="output_index",
        ),
        migrations.RemoveField(
            model_name="rankingset",
            name="generation_requests",
        ),
        migrations.RunPython(sqlite_triggers_restore, migrations.RunPython.noop),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="GenerationRequest")],
            database_operations=[],
        ),
    ]
