"""Bulk imports of conversation trees: whole files of conversations, messages and rankings at once.

The importers (labelling.importers) read and check a file, then hand every conversation to
`conversations_import_bulk` in one call. Row by row through `conversation_start` and
`message_add` 100,000 prompts take minutes; here they are a handful of INSERT statements.

What comes in has been checked by the caller as every door checks what it stores (texts with
annotations.text, lengths against the project where the format asks for it); this module checks
only what the database cannot: that roles follow each other as a dialogue's must and that every
message's parent comes before it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.db import connections, models, router, transaction
from django.utils import timezone

from annotations.models import (
    Conversation,
    Message,
    ModelVersion,
    Project,
    Ranking,
    RankingCandidate,
    RankingSet,
)
from annotations.services import NEXT_ROLES, a_turn

# Rows per INSERT of bulk_create for ranking sets (Django lowers it to SQLite's limit), and per
# UNNEST statement of `insert_rows` on PostgreSQL.
BATCH_SIZE = 2000
PG_ROWS_PER_INSERT = 10_000


class ImportedMessage(NamedTuple):
    """One message of an imported conversation."""

    role: str
    text: str
    lang: str
    # Index of the message this one replies to, among its conversation's messages (an earlier
    # one); None for the first turn.
    parent: int | None = None
    external_id: str = ""
    # The model version that wrote it, by name (registered as a policy model if it is new); a
    # message with a model is synthetic.
    model: str | None = None
    synthetic: bool = False
    meta: dict | None = None  # None stores {}


class ImportedRanking(NamedTuple):
    """A ranking that came with the file: replies to one message, in an order, as one set.

    Indices are the conversation's messages. It is stored as a complete ranking set with one
    ranking by nobody (an import), whose order is also the set's consensus.
    """

    context: int
    candidates: list[int]  # in the set's positions
    order: list[list[int]]  # groups of candidates, best first; a group is a tie


class ImportedConversation(NamedTuple):
    """A conversation to import: its messages, and the rankings of some of their replies."""

    messages: Sequence[ImportedMessage]  # parents before their replies
    external_id: str = ""
    meta: dict | None = None  # None stores {}
    rankings: Sequence[ImportedRanking] = ()


@dataclass(frozen=True)
class ImportedCounts:
    conversations: int
    messages: int
    ranking_sets: int


def conversations_import_lock(*, project: Project) -> None:
    """Hold the project's import lock until the transaction ends.

    One import per project at a time, so that two concurrent imports cannot both add what the
    other is adding: take it inside the transaction that reads the project's rows for duplicates
    and then calls `conversations_import_bulk`. (SQLite's immediate transactions serialise
    writers anyway.)
    """
    Project.objects.select_for_update().filter(pk=project.pk).first()


@transaction.atomic
def conversations_import_bulk(
    *, project: Project, source: str, conversations: Iterable[ImportedConversation]
) -> ImportedCounts:
    """Store `conversations` in `project` with their messages and rankings, all or nothing.

    `conversations` is read once, so it may be a generator, and for a large file should be: a
    list of 100,000 conversations with their meta is 100,000 more objects that the garbage
    collector walks again and again while the import runs.
    Conversations and messages go in with `insert_rows`, one statement per batch of rows and,
    for messages, per depth (a parent must exist before its replies, and each depth's ids come
    back from its insert); the few ranking sets with `bulk_create`.
    """
    batch = _Batch.read(conversations)
    now = timezone.now()
    uniform, columns = _split_uniform(
        Conversation,
        {"meta": batch.metas, "external_id": batch.external_ids},
        encoded=("meta",),
    )
    conversation_ids = insert_rows(
        Conversation,
        constants={"project": project.pk, "source": source, "created_at": now, **uniform},
        columns=columns,
        returning=True,
    )
    message_ids = _insert_messages(batch.levels, conversation_ids, now)
    ranking_sets = _insert_rankings(project, batch.rankings, message_ids, now)
    return ImportedCounts(
        conversations=len(conversation_ids),
        messages=len(message_ids),
        ranking_sets=ranking_sets,
    )


@dataclass(slots=True)
class _Level:
    """The messages of one depth, across conversations, column by column, and where each
    stands. (Columns rather than the messages themselves: 100,000 ImportedMessages, a tuple
    subclass, would stay on the garbage collector's lists until the insert; strings do not.)"""

    conversations: list[int] = field(default_factory=list)  # its conversation's number
    positions: list[int] = field(default_factory=list)  # its number among all messages
    parents: list[int | None] = field(default_factory=list)  # the parent's, likewise
    roles: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    langs: list[str] = field(default_factory=list)
    external_ids: list[str] = field(default_factory=list)
    models: list[str | None] = field(default_factory=list)
    synthetic: list[bool] = field(default_factory=list)
    metas: list[dict | None] = field(default_factory=list)


@dataclass(slots=True)
class _Batch:
    """What is stored of the conversations, column by column, read in one pass."""

    metas: list[str] = field(default_factory=list)  # JSON text, as `insert_rows` wants it
    external_ids: list[str] = field(default_factory=list)
    levels: list[_Level] = field(default_factory=list)  # the messages by depth
    # Each ranking with the position of its conversation's first message among all messages.
    rankings: list[tuple[int, ImportedRanking]] = field(default_factory=list)

    @classmethod
    def read(cls, conversations: Iterable[ImportedConversation]) -> _Batch:
        """Numbers every message in the order of the conversations and their messages.

        Raises ValidationError where a parent does not come before its reply or a role cannot
        follow its parent's. (Written for speed: 100,000 prompts pass through this loop.)
        """
        batch = cls()
        levels, metas, external_ids = batch.levels, batch.metas, batch.external_ids
        dumps, first_roles = json.dumps, NEXT_ROLES[None]
        depths: list[int] = []  # by position
        for number, conversation in enumerate(conversations):
            meta = conversation.meta
            metas.append(dumps({} if meta is None else meta))
            external_ids.append(conversation.external_id)
            messages, first = conversation.messages, len(depths)
            for index, message in enumerate(messages):
                parent = message.parent
                if parent is None:
                    if message.role not in first_roles:
                        _refuse_role(number, index, message.role, None)
                    at, depth = None, 0
                elif 0 <= parent < index:
                    above, at = messages[parent].role, first + parent
                    if message.role not in NEXT_ROLES[above]:
                        _refuse_role(number, index, message.role, above)
                    depth = depths[at] + 1
                else:
                    raise ValidationError(
                        f"Conversation {number}, message {index}: its parent must come before it."
                    )
                if depth == len(levels):
                    levels.append(_Level())
                level = levels[depth]
                level.conversations.append(number)
                level.positions.append(first + index)
                level.parents.append(at)
                level.roles.append(message.role)
                level.texts.append(message.text)
                level.langs.append(message.lang)
                level.external_ids.append(message.external_id)
                level.models.append(message.model)
                level.synthetic.append(message.synthetic or message.model is not None)
                level.metas.append(message.meta)
                depths.append(depth)
            if conversation.rankings:
                batch.rankings.extend((first, ranking) for ranking in conversation.rankings)
        return batch


def _refuse_role(number: int, index: int, role: str, above: str | None) -> None:
    after = f"after {a_turn(above)}" if above else "as the first turn"
    raise ValidationError(
        f"Conversation {number}, message {index}: {a_turn(role)} cannot come {after}."
    )


def _insert_messages(levels: list[_Level], conversation_ids: list[int], now) -> list[int]:
    """The ids of all messages, in the order of their conversations and, in each, its messages."""
    model_ids = _model_versions({m for level in levels for m in level.models if m is not None})
    ids = [0] * sum(len(level.positions) for level in levels)
    for depth, level in enumerate(levels):
        columns = {
            "conversation": [conversation_ids[n] for n in level.conversations],
            "text": level.texts,
            "lang": level.langs,
            "role": level.roles,
            "parent": [None if at is None else ids[at] for at in level.parents],
            "external_id": level.external_ids,
            "author_model": [None if m is None else model_ids[m] for m in level.models],
            "is_synthetic": level.synthetic,
            "meta": level.metas,
        }
        uniform, columns = _split_uniform(Message, columns, empty=("meta",))
        created = insert_rows(
            Message,
            constants={"depth": depth, "created_at": now, **uniform},
            columns=columns,
            returning=True,
        )
        for position, pk in zip(level.positions, created, strict=True):
            ids[position] = pk
    return ids


def _model_versions(names: set[str]) -> dict[str, int]:
    """The ids of the model versions called `names`, registered where new."""
    return {
        name: ModelVersion.objects.get_or_create(
            name=name,
            defaults={"kind": ModelVersion.Kind.POLICY, "source": name, "notes": "imported"},
        )[0].pk
        for name in sorted(names)
    }


def _insert_rankings(
    project: Project, rankings: list[tuple[int, ImportedRanking]], message_ids: list[int], now
) -> int:
    sets, orders = [], []
    for first, ranking in rankings:
        order = [[message_ids[first + i] for i in group] for group in ranking.order]
        sets.append(
            RankingSet(
                project=project,
                context_id=message_ids[first + ranking.context],
                state=RankingSet.State.COMPLETE,
                rankings_needed=1,
                rankings_count=1,
                consensus=order,
                completed_at=now,
            )
        )
        orders.append((order, [message_ids[first + i] for i in ranking.candidates]))
    created = RankingSet.objects.bulk_create(sets, batch_size=BATCH_SIZE)
    RankingCandidate.objects.bulk_create(
        [
            RankingCandidate(
                ranking_set_id=ranking_set.pk, message_id=message_id, position=position
            )
            for ranking_set, (_, candidates) in zip(created, orders, strict=True)
            for position, message_id in enumerate(candidates)
        ],
        batch_size=BATCH_SIZE,
    )
    Ranking.objects.bulk_create(
        [
            Ranking(ranking_set_id=ranking_set.pk, annotator=None, order=order)
            for ranking_set, (order, _) in zip(created, orders, strict=True)
        ],
        batch_size=BATCH_SIZE,
    )
    return len(created)


def _split_uniform(
    model: type[models.Model],
    columns: dict[str, list],
    *,
    encoded: tuple[str, ...] = (),
    empty: tuple[str, ...] = (),
) -> tuple[dict[str, object], dict[str, list]]:
    """(constants, columns) for `insert_rows`: a column with one value in every row is sent once.

    The first column always stays a column (it carries the number of rows). JSON columns that
    stay are encoded here, once per row, as `insert_rows` wants them, except those `encoded`
    names, which hold JSON text already; in those `empty` names, None stands for {}.
    """
    constants: dict[str, object] = {}
    kept: dict[str, list] = {}
    for position, (name, values) in enumerate(columns.items()):
        is_json = isinstance(model._meta.get_field(name), models.JSONField)
        if position and values and values.count(values[0]) == len(values):
            value = values[0]
            if value is None and name in empty:
                constants[name] = {}
            elif value is not None:  # left out, a column is NULL anyway
                constants[name] = json.loads(value) if name in encoded else value
        elif is_json and name not in encoded:
            blank = {} if name in empty else None
            kept[name] = [json.dumps(blank if value is None else value) for value in values]
        else:
            kept[name] = values
    return constants, kept


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
