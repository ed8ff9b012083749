"""Indexes for the data explorer: full-text search over messages, and its list pages.

The list indexes serve the lists' order (newest first), so a page reads its 25 rows instead of
sorting the whole project.

The search indexes are GIN indexes on the very expression the explorer searches with
(`annotations.explorer.search_vector`: `to_tsvector(<config>, COALESCE(text, ''))`), one per
text-search configuration the explorer picks (`english` for English-only projects, `simple`
otherwise). They exist on PostgreSQL only: SQLite has no full-text search here (the explorer
falls back to a substring match there), so on any other database these steps do nothing. They
are built CONCURRENTLY, so writes to a large message table go on meanwhile (hence the migration
is not atomic).
"""

from django.db import migrations, models

SEARCH_CONFIGS = ["english", "simple"]


class PostgresOnlySQL(migrations.RunSQL):
    """Raw SQL that runs on PostgreSQL and does nothing on other databases."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


def search_index(config: str) -> PostgresOnlySQL:
    name = f"message_text_search_{config}"
    return PostgresOnlySQL(
        sql=(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON annotations_message "
            f"USING gin (to_tsvector('{config}'::regconfig, COALESCE(text, '')))"
        ),
        reverse_sql=f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("annotations", "0010_ranking_set_replies_wanted"),
    ]

    operations = [
        *(search_index(config) for config in SEARCH_CONFIGS),
        # The explorer's lists, newest first, a page at a time (every database).
        migrations.AddIndex(
            model_name="conversation",
            index=models.Index(
                fields=["project", "created_at", "id"], name="conversation_newest_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="rankingset",
            index=models.Index(
                fields=["project", "created_at", "id"], name="ranking_set_newest_idx"
            ),
        ),
    ]
