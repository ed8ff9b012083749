"""Keep a message and its parent in the same conversation, enforced by the database.

PostgreSQL gets a composite foreign key (parent_id, conversation_id) -> (id, conversation_id);
SQLite, which cannot add a constraint to an existing table, gets triggers that do the same.
"""

from django.db import migrations

POSTGRES_FORWARD = """
ALTER TABLE annotations_message
    ADD CONSTRAINT message_parent_same_conversation
    FOREIGN KEY (parent_id, conversation_id)
    REFERENCES annotations_message (id, conversation_id)
    ON DELETE CASCADE;
"""
POSTGRES_BACKWARD = (
    "ALTER TABLE annotations_message DROP CONSTRAINT message_parent_same_conversation;"
)

SQLITE_TRIGGER = """
CREATE TRIGGER message_parent_same_conversation_{when}
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
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_TRIGGER.format(when="insert", event="INSERT"))
        schema_editor.execute(SQLITE_TRIGGER.format(when="update", event="UPDATE"))


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD)
    elif vendor == "sqlite":
        for when in ("insert", "update"):
            schema_editor.execute(
                f"DROP TRIGGER IF EXISTS message_parent_same_conversation_{when};"
            )


class Migration(migrations.Migration):
    dependencies = [("annotations", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
