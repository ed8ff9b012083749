"""The backup of README.md ("Backup and restore") round-trips: pg_dump, pg_restore, same data.

Real rows go in through the services, `pg_dump --format=custom` takes the test database, and
`pg_restore --no-owner` puts it into a database of its own, which must hold the same rows.
"""

import glob
import os
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
from django.db import connection
from psycopg2 import sql

from annotations.models import Message, Ranking
from labelling.claims import task_claim_next, task_submit
from tests.factories import (
    ConversationFactory,
    MembershipFactory,
    MessageFactory,
    ProjectFactory,
    UserFactory,
    candidate_ids,
    make_ranking_set,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="pg_dump and pg_restore need PostgreSQL (set DATABASE_URL to a PostgreSQL one)",
    ),
]

# Tables whose rows must all come back: every app's own tables, the users, and the record of
# applied migrations (which tells `migrate` where a restored database stands).
TABLE_PREFIXES = ("annotations_", "labelling_", "exports_", "trainer_bridge_")
TABLES_ALSO = ("auth_user", "django_migrations")

# Line breaks, tabs, quotes, a backslash and characters outside ASCII must survive unchanged.
AWKWARD_TEXT = "Line one\nZweite Zeile — naïve café 🚀\t\"quoted\" and 'single' \\ done."


def pg_tool(name: str) -> str:
    """The client program on PATH, else the one of the newest PostgreSQL under /usr/lib."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: [
            int(part) for part in Path(path).parent.name.split(".") if part.isdigit()
        ],
    )
    for folder in reversed(versions):
        candidate = Path(folder) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.skip(f"{name} is not installed (install the PostgreSQL client, e.g. postgresql-client)")


def connection_args(settings: dict) -> list[str]:
    args = []
    if settings.get("HOST"):
        args += ["--host", settings["HOST"]]
    if settings.get("PORT"):
        args += ["--port", str(settings["PORT"])]
    if settings.get("USER"):
        args += ["--username", settings["USER"]]
    return args


def run_tool(command: list[str], settings: dict) -> None:
    env = dict(os.environ)
    if settings.get("PASSWORD"):
        env["PGPASSWORD"] = settings["PASSWORD"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"{Path(command[0]).name} exited with {done.returncode}:\n{done.stderr}")


@contextmanager
def connected(settings: dict, dbname: str):
    conn = psycopg2.connect(
        dbname=dbname,
        host=settings.get("HOST") or None,
        port=settings.get("PORT") or None,
        user=settings.get("USER") or None,
        password=settings.get("PASSWORD") or None,
    )
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def empty_database(settings: dict, dbname: str):
    """A new database `dbname`, created from template0 (nothing in it) and dropped afterwards."""
    with connected(settings, settings["NAME"]) as admin:
        admin.autocommit = True  # CREATE and DROP DATABASE cannot run in a transaction
        with admin.cursor() as cursor:
            cursor.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(dbname))
            )
        try:
            yield dbname
        finally:
            with admin.cursor() as cursor:
                cursor.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(dbname)
                    )
                )


def row_counts(conn) -> dict[str, int]:
    """Rows in each checked table of the public schema, by table name."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        tables = sorted(
            name
            for (name,) in cursor.fetchall()
            if name.startswith(TABLE_PREFIXES) or name in TABLES_ALSO
        )
        counts = {}
        for table in tables:
            cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            counts[table] = cursor.fetchone()[0]
    return counts


def column_of_row(conn, model, column: str, pk: int):
    """One column of one row of `model`'s table, as psycopg2 reads it."""
    query = sql.SQL("SELECT {} FROM {} WHERE id = %s").format(
        sql.Identifier(column), sql.Identifier(model._meta.db_table)
    )
    with conn.cursor() as cursor:
        cursor.execute(query, (pk,))
        row = cursor.fetchone()
    return row[0] if row else None


def test_a_dump_restored_into_a_new_database_holds_the_same_data(transactional_db, tmp_path):
    pg_dump, pg_restore = pg_tool("pg_dump"), pg_tool("pg_restore")

    # A demonstration thread and a ranked set, written the way the site writes them.
    project = ProjectFactory(slug="backup")
    trainer = MembershipFactory(
        project=project, user=UserFactory(username="tina"), role="trainer"
    ).user
    conversation = ConversationFactory(project=project)
    prompt = MessageFactory(conversation=conversation, text="What is a backup?")
    reply = MessageFactory(
        conversation=conversation,
        parent=prompt,
        depth=1,
        role=Message.Role.ASSISTANT,
        text=AWKWARD_TEXT,
        author_user=trainer,
    )
    ranking_set = make_ranking_set(project)
    a, b, c, d = candidate_ids(ranking_set)
    task = task_claim_next(project=project, user=trainer, kind="ranking")
    task_submit(
        task_id=task.pk,
        user=trainer,
        data={"order": [[c], [d, a], [b]], "flags": {str(b): ["harmful"]}},
    )
    ranking = Ranking.objects.get()
    assert ranking.order == [[c], sorted([a, d]), [b]]

    settings = connection.settings_dict
    source_name = settings["NAME"]  # the test database pytest-django created
    dump = tmp_path / "parley.dump"
    run_tool(
        [pg_dump, "--format=custom", "--file", str(dump), *connection_args(settings),
         "--dbname", source_name],
        settings,
    )  # fmt: skip
    assert dump.stat().st_size > 0

    restored_name = f"{source_name}_restore_{uuid.uuid4().hex[:8]}"
    with empty_database(settings, restored_name):
        run_tool(
            [pg_restore, "--no-owner", *connection_args(settings),
             "--dbname", restored_name, str(dump)],
            settings,
        )  # fmt: skip
        with (
            connected(settings, source_name) as source,
            connected(settings, restored_name) as restored,
        ):
            expected = row_counts(source)
            assert expected["annotations_message"] >= 2 + 5  # two turns; a context and 4 replies
            assert expected["annotations_ranking"] == 1
            assert expected["labelling_task"] >= 1
            assert expected["django_migrations"] > 0
            assert row_counts(restored) == expected

            assert column_of_row(restored, Message, "text", reply.pk) == AWKWARD_TEXT
            assert column_of_row(restored, Ranking, "order", ranking.pk) == ranking.order
