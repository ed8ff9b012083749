"""Put back SQLite's triggers that keep a message and its parent in the same conversation.

SQLite cannot add a column in place: Django rebuilds the table, and a rebuild drops the triggers
that migration 0002 made (0009 added `Message.is_excluded` that way). PostgreSQL keeps its
composite foreign key through an added column, so there is nothing to do there. A later
migration that rebuilds `annotations_message` on SQLite must end the same way.
"""

from django.db import migrations

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


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_TRIGGER.format(when="insert", event="INSERT"))
        schema_editor.execute(SQLITE_TRIGGER.format(when="update", event="UPDATE"))


class Migration(migrations.Migration):
    dependencies = [("annotations", "0011_message_text_search_index")]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
