"""Bulk row insertion for the importers, and the per-project lock an import holds."""

from __future__ import annotations

import sqlite3

from django.db import connections, models, router

from annotations.models import Project

# Rows per INSERT of the tree import's bulk_create (Django lowers it to SQLite's limit) and of
# the prompt import's UNNEST statements on PostgreSQL.
BATCH_SIZE = 2000
PG_ROWS_PER_INSERT = 10_000


def insert_rows(
    model: type[models.Model],
    *,
    constants: dict[str, object],
    columns: dict[str, list],
    returning: bool = False,
) -> list[int]:
    """Insert one row per entry of `columns`' lists; with `returning`, their ids in order.

    The statements are the ones `bulk_create` sends (UNNEST arrays on PostgreSQL, multi-row
    VALUES elsewhere, ids from RETURNING in row order), without building a model instance and
    compiling every field of every row: for 100,000 prompts (a conversation and a message
    each) `bulk_create` took 20 to 23 s on this project's 2-core machine, on SQLite and on
    PostgreSQL, these statements 3 to 6 s. `constants` take Python values, prepared once by
    their fields; `columns` hold database-ready values, JSON as JSON text. Fields left out get
    NULL.
    """
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    opts = model._meta
    const_fields = [opts.get_field(name) for name in constants]
    row_fields = [opts.get_field(name) for name in columns]
    const_values = [
        f.get_db_prep_save(value, connection)
        for f, value in zip(const_fields, constants.values(), strict=True)
    ]
    lists = list(columns.values())
    count = len(lists[0]) if lists else 0
    names = ", ".join(quote(f.column) for f in const_fields + row_fields)
    head = f"INSERT INTO {quote(opts.db_table)} ({names}) "
    tail = f" RETURNING {quote(opts.pk.column)}" if returning else ""
    ids: list[int] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            selected = [f"%s::{f.db_type(connection)}" for f in const_fields] + ["u.*"]
            arrays = ", ".join(f"%s::{f.db_type(connection).split('(')[0]}[]" for f in row_fields)
            # Names and types come from the model, values go as parameters.
            sql = f"{head}SELECT {', '.join(selected)} FROM unnest({arrays}) AS u{tail}"  # noqa: S608
            for start in range(0, count, PG_ROWS_PER_INSERT):
                chunk = [values[start : start + PG_ROWS_PER_INSERT] for values in lists]
                cursor.execute(sql, [*const_values, *chunk])
                if returning:
                    ids.extend(row[0] for row in cursor.fetchall())
            return ids
        width = len(const_fields) + len(row_fields)
        group = "(" + ", ".join(["%s"] * width) + ")"
        per_statement = max(1, _max_query_params(connection) // width)
        for start in range(0, count, per_statement):
            rows = list(
                zip(*(values[start : start + per_statement] for values in lists), strict=True)
            )
            sql = head + "VALUES " + ", ".join([group] * len(rows)) + tail
            cursor.execute(sql, [v for row in rows for v in (*const_values, *row)])
            if returning:
                ids.extend(row[0] for row in cursor.fetchall())
    return ids


def _max_query_params(connection) -> int:
    # SQLite's real limit (32,766 by default since 3.32) rather than Django's cautious 999.
    connection.ensure_connection()
    getlimit = getattr(connection.connection, "getlimit", None)
    if getlimit is not None and connection.vendor == "sqlite":
        return getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return connection.features.max_query_params or 999


def _lock(project: Project) -> None:
    # One import per project at a time, so two concurrent imports cannot both add a prompt
    # the other one is adding (SQLite's immediate transactions serialise writers anyway).
    Project.objects.select_for_update().filter(pk=project.pk).first()
