"""Prompt and message-tree imports: check a whole file first, then store it in one transaction.

Three formats come in:

- `jsonl`: one prompt per line, `{"prompt": "...", "lang": "en", "tags": ["..."]}` or a bare
  JSON string; each prompt becomes a pool conversation (source "prompt") with one user turn.
- `csv`: a header row with a `prompt` column and optional `lang` and `tags` (tags separated by
  commas or semicolons); the delimiter (comma, semicolon or tab) is read from the header.
- `oasst`: Open Assistant's message-tree export, one tree per line, imported whole: a
  conversation (source "import") with every human and model-written message, and a completed
  ranking set with one consensus ranking wherever two or more siblings carry a `rank`.

A file is taken or refused as a whole: every problem is collected with its line number before
anything is written, and nothing is stored unless there are none. Duplicates are not problems;
they are skipped and counted (prompts by normalised text against the pool and earlier lines,
trees by `message_tree_id`). Prompts must fit the project's `max_message_chars`; messages of a
tree are a record of what was written and are taken whatever their length.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import sqlite3
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connections, models, router, transaction
from django.template.defaultfilters import filesizeformat
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
from annotations.selectors import prompt_pool
from annotations.services import NEXT_ROLES

FORMATS = ("jsonl", "csv", "oasst")
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
# Rows per INSERT of the tree import's bulk_create (Django lowers it to SQLite's limit) and of
# the prompt import's UNNEST statements on PostgreSQL.
BATCH_SIZE = 2000
PG_ROWS_PER_INSERT = 10_000
OA_ROLES = {"prompter": Message.Role.USER, "assistant": Message.Role.ASSISTANT}
# What an Open Assistant node keeps in Message.meta besides what has a column of its own.
OA_META_KEYS = (
    "review_count",
    "review_result",
    "deleted",
    "synthetic",
    "model_name",
    "rank",
    "emojis",
)
LANG_MAX = Message._meta.get_field("lang").max_length
EXTERNAL_ID_MAX = Message._meta.get_field("external_id").max_length
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")  # ModelVersion.name's validator
MODEL_NAME_MAX = ModelVersion._meta.get_field("name").max_length
LONG_ID = f"longer than {EXTERNAL_ID_MAX} characters"
JSON_SUFFIXES = {".jsonl", ".json", ".ndjson"}
FIRST_LINE = re.compile(r"\s*(.*)")
RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


@dataclass(frozen=True)
class ImportProblem:
    """Why a file was refused: where (line, field) and what."""

    line: int | None
    message: str
    field: str | None = None

    def __str__(self) -> str:
        parts = [f"line {self.line}" if self.line else "file"]
        if self.field:
            parts.append(f"field '{self.field}'")
        parts.append(self.message)
        return ": ".join(parts)


@dataclass
class ImportReport:
    format: str
    imported: int = 0  # prompts, or trees for oasst
    duplicates: int = 0
    conversations: int = 0
    messages: int = 0
    ranking_sets: int = 0
    deleted: int = 0  # oasst messages skipped as deleted (with their replies)
    errors: list[ImportProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def unit(self) -> str:
        return "trees" if self.format == "oasst" else "prompts"

    def summary(self) -> str:
        if self.errors:
            problems = _count(len(self.errors), "problem")
            return f"The file was refused with {problems}; nothing was imported."
        unit = "tree" if self.format == "oasst" else "prompt"
        text = (
            f"Imported {_count(self.imported, unit)} "
            f"({_count(self.duplicates, 'duplicate')} skipped)"
        )
        if self.format == "oasst":
            text += (
                f": {_count(self.conversations, 'conversation')}, "
                f"{_count(self.messages, 'message')}, {_count(self.ranking_sets, 'ranking set')}; "
                f"{_count(self.deleted, 'deleted message')} left out"
            )
        return text + "."


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


@dataclass
class _Prompt:
    line: int
    text: str
    lang: str
    tags: list[str]


@dataclass
class _Node:
    parent: int | None  # index in the tree's nodes
    role: str
    text: str
    lang: str
    depth: int
    external_id: str
    is_synthetic: bool
    model_name: str | None
    rank: int | None
    meta: dict
    pk: int | None = None


@dataclass
class _Tree:
    line: int
    tree_id: str
    state: str | None
    nodes: list[_Node] = field(default_factory=list)  # breadth first: parents before children


@dataclass(frozen=True)
class _Rules:
    """What every line is checked against, worked out once per file."""

    default_lang: str
    max_chars: int
    # A string can only hold a NUL or an unpaired surrogate through a raw NUL or a \u escape
    # of one, so a file with neither skips the per-string check.
    check_strings: bool

    @classmethod
    def for_file(cls, project: Project, text: str) -> _Rules:
        return cls(
            default_lang=(project.languages or ["en"])[0],
            max_chars=project.max_message_chars,
            check_strings="\x00" in text or bool(RISKY_ESCAPE.search(text)),
        )

    def unstorable(self, text: str) -> str | None:
        return _unstorable(text) if self.check_strings else None


def normalise(text: str) -> str:
    """The key two prompts share when they are duplicates: whitespace and case do not count."""
    return " ".join(text.split()).casefold()


def import_max_bytes() -> int:
    return int(settings.PARLEY.get("IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES))


def prompt_file_import(
    *,
    project: Project,
    source: bytes | BinaryIO,
    filename: str = "",
    fmt: str | None = None,
    user: AbstractBaseUser | None = None,
) -> ImportReport:
    """Check the whole file, then import it in one transaction, or import nothing.

    `source` is the file's bytes or a binary file object (an upload, an open file). The report
    lists every problem with its line number when the file is refused.
    """
    if fmt and fmt not in FORMATS:
        problem = ImportProblem(None, f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
        return ImportReport(format=fmt, errors=[problem])
    limit = import_max_bytes()
    data = source if isinstance(source, bytes) else source.read(limit + 1)
    if len(data) > limit:
        message = (
            f"the file is larger than the import limit of {filesizeformat(limit)} "
            f"({limit:,} bytes); split it into smaller files"
        )
        return ImportReport(format=fmt or "unknown", errors=[ImportProblem(None, message)])
    text, problems, bad_lines = _decode(data)
    fmt = fmt or detect_format(filename, text)
    report = ImportReport(format=fmt, errors=problems)
    if not text.strip():
        report.errors.append(ImportProblem(None, "the file is empty"))
        return report
    rules = _Rules.for_file(project, text)
    context = {"file": Path(filename).name, "batch": uuid.uuid4().hex, "format": fmt}
    if user is not None:
        context["by"] = user.pk
    if fmt == "oasst":
        trees = _parse_oasst(text, bad_lines, rules, report)
        if report.ok:
            _store_trees(project, trees, context, report)
    else:
        parse = _parse_csv if fmt == "csv" else _parse_jsonl
        prompts = parse(text, bad_lines, rules, report.errors)
        if report.ok and not prompts:
            report.errors.append(ImportProblem(None, "the file holds no prompts"))
        if report.ok:
            _store_prompts(project, prompts, context, report)
    return report


def detect_format(filename: str, text: str) -> str:
    """The format from the file name and the first line (a CSV header may be quoted too)."""
    suffix = Path(filename).suffix.lower()
    if suffix in {".csv", ".tsv"}:
        return "csv"
    head = FIRST_LINE.match(text).group(1).strip()
    try:
        first = json.loads(head) if head.startswith(("{", '"')) else None
    except (ValueError, RecursionError):
        first = None
    if (
        isinstance(first, dict)
        and "message_tree_id" in first
        and isinstance(first.get("prompt"), dict)
    ):
        return "oasst"
    if suffix in JSON_SUFFIXES or isinstance(first, dict | str):
        return "jsonl"
    return "csv"


# --- Reading --------------------------------------------------------------------------------


def _decode(data: bytes) -> tuple[str, list[ImportProblem], set[int]]:
    """The text, a problem for every line that is not UTF-8, and those lines' numbers."""
    offset = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    body = data[offset:]
    try:
        return body.decode("utf-8"), [], set()
    except UnicodeDecodeError:
        pass
    # Only on failure: find every bad line. A newline byte never occurs inside a UTF-8
    # sequence, so decoding line by line finds exactly the broken ones.
    problems, bad = [], set()
    for number, raw in enumerate(body.split(b"\n"), 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(
                ImportProblem(
                    number,
                    f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of "
                    f"the line (offset {offset + exc.start} in the file); save the file as UTF-8",
                )
            )
            bad.add(number)
        offset += len(raw) + 1
    return body.decode("utf-8", "replace"), problems, bad


def _lines(text: str, bad_lines: set[int]):
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line breaks.
    for number, line in enumerate(text.split("\n"), 1):
        if number not in bad_lines and line.strip():
            yield number, line


def _load_json(line: str, number: int, problems: list[ImportProblem]):
    try:
        return json.loads(line), True
    except json.JSONDecodeError as exc:
        problems.append(ImportProblem(number, f"malformed JSON: {exc.msg} (column {exc.colno})"))
    except RecursionError:
        problems.append(ImportProblem(number, "malformed JSON: nested too deeply"))
    return None, False


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), "a value")


def _unstorable(text: str) -> str | None:
    """Why the database would refuse this string, if it would."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (a broken \\u escape)"
    return None


def _storable(value) -> bool:
    """Whether a JSON value can go into a JSON column on every database we run on."""
    if value is None or isinstance(value, bool | int):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, str):
        return _unstorable(value) is None
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    if isinstance(value, dict):
        return all(_unstorable(k) is None and _storable(v) for k, v in value.items())
    return False


def _text_field(
    record: dict, key: str, line: int, problems: list, rules: _Rules, *, path: str = ""
) -> str | None:
    name = path + key
    if key not in record:
        problems.append(ImportProblem(line, "missing", name))
        return None
    value = record[key]
    if not isinstance(value, str):
        problems.append(ImportProblem(line, f"expected a string, got {_kind(value)}", name))
        return None
    if not value.strip():
        problems.append(ImportProblem(line, "empty text", name))
        return None
    if why := rules.unstorable(value):
        problems.append(ImportProblem(line, why, name))
        return None
    return value


def _lang_field(record: dict, line: int, problems: list, rules: _Rules, *, path: str = "") -> str:
    value = record.get("lang")
    if value is None or value == "":
        return rules.default_lang
    if not isinstance(value, str) or len(value) > LANG_MAX or rules.unstorable(value):
        problems.append(
            ImportProblem(
                line, f"expected a language code of at most {LANG_MAX} characters", path + "lang"
            )
        )
        return rules.default_lang
    return value.strip()


# --- Prompts --------------------------------------------------------------------------------


def _prompt_from(record: dict, line: int, rules: _Rules, problems: list) -> _Prompt | None:
    before = len(problems)
    text = _text_field(record, "prompt", line, problems, rules)
    if text is not None:
        text = text.strip()
        if len(text) > rules.max_chars:
            message = f"{len(text)} characters; the project's limit is {rules.max_chars}"
            problems.append(ImportProblem(line, message, "prompt"))
    lang = _lang_field(record, line, problems, rules)
    tags = record.get("tags") or []
    if not isinstance(tags, list) or not all(
        isinstance(t, str) and not rules.unstorable(t) for t in tags
    ):
        problems.append(ImportProblem(line, "expected a list of strings", "tags"))
    if len(problems) > before:
        return None
    return _Prompt(line=line, text=text, lang=lang, tags=[t.strip() for t in tags if t.strip()])


def _parse_jsonl(text: str, bad_lines: set[int], rules: _Rules, problems: list) -> list[_Prompt]:
    prompts = []
    for number, line in _lines(text, bad_lines):
        value, ok = _load_json(line, number, problems)
        if not ok:
            continue
        if isinstance(value, str):
            value = {"prompt": value}
        elif not isinstance(value, dict):
            problems.append(
                ImportProblem(
                    number,
                    "expected an object with a 'prompt' field or a JSON string, "
                    f"got {_kind(value)}",
                )
            )
            continue
        if prompt := _prompt_from(value, number, rules, problems):
            prompts.append(prompt)
    return prompts


def _parse_csv(text: str, bad_lines: set[int], rules: _Rules, problems: list) -> list[_Prompt]:
    head = FIRST_LINE.match(text).group(1)
    try:
        delimiter = csv.Sniffer().sniff(head, delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","  # a single column has nothing to sniff
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    columns: dict[str, int] | None = None
    width = 0
    prompts = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if start not in bad_lines:
                problems.append(ImportProblem(start, f"malformed CSV: {exc}"))
            if reader.line_num < start:
                break  # the reader did not move on: nothing more can be read
            continue
        if not row or start in bad_lines:
            continue
        if columns is None:
            columns = {name.strip().casefold(): i for i, name in enumerate(row)}
            width = len(row)
            if "prompt" not in columns:
                found = ", ".join(name.strip() for name in row)
                problems.append(
                    ImportProblem(start, f"no 'prompt' column in the header (found: {found})")
                )
                return []
            continue
        if len(row) != width:
            problems.append(ImportProblem(start, f"{len(row)} fields where the header has {width}"))
            continue
        record = {"prompt": row[columns["prompt"]]}
        if "lang" in columns:
            record["lang"] = row[columns["lang"]]
        if "tags" in columns:
            record["tags"] = [t for t in re.split(r"[,;]", row[columns["tags"]]) if t.strip()]
        if prompt := _prompt_from(record, start, rules, problems):
            prompts.append(prompt)
    if columns is None:
        problems.append(ImportProblem(None, "no header row with a 'prompt' column"))
    return prompts


def _store_prompts(project: Project, prompts: list[_Prompt], context: dict, report: ImportReport):
    with transaction.atomic():
        _lock(project)
        # Existing pool prompts count as duplicates whatever their state (a prompt a lead
        # removed after a report stays removed when the same file comes in again).
        seen = {
            normalise(text)
            for text in prompt_pool(project=project).values_list("text", flat=True).iterator()
        }
        fresh = []
        for prompt in prompts:
            key = normalise(prompt.text)
            if key in seen:
                report.duplicates += 1
                continue
            seen.add(key)
            fresh.append(prompt)
        now = timezone.now()
        conversation_ids = insert_rows(
            Conversation,
            constants={
                "project": project.pk,
                "source": Conversation.Source.PROMPT,
                "external_id": "",
                "created_at": now,
            },
            columns={
                "meta": [
                    json.dumps({"tags": p.tags, "import": {**context, "line": p.line}})
                    for p in fresh
                ]
            },
            returning=True,
        )
        insert_rows(
            Message,
            constants={
                "role": Message.Role.USER,
                "depth": 0,
                "is_synthetic": False,
                "external_id": "",
                "meta": {},
                "created_at": now,
            },
            columns={
                "conversation": conversation_ids,
                "text": [p.text for p in fresh],
                "lang": [p.lang for p in fresh],
            },
        )
    report.imported = report.conversations = report.messages = len(fresh)


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


# --- Open Assistant message trees -----------------------------------------------------------


def _parse_oasst(text: str, bad_lines: set[int], rules: _Rules, report: ImportReport):
    problems = report.errors
    trees: list[_Tree] = []
    tree_ids: set[str] = set()
    message_lines: dict[str, int] = {}  # every message id in the file -> its line
    for number, line in _lines(text, bad_lines):
        value, ok = _load_json(line, number, problems)
        if not ok:
            continue
        if not isinstance(value, dict):
            kind = _kind(value)
            problems.append(ImportProblem(number, f"expected a message tree object, got {kind}"))
            continue
        tree_id = _text_field(value, "message_tree_id", number, problems, rules)
        if tree_id is not None and len(tree_id) > EXTERNAL_ID_MAX:
            problems.append(ImportProblem(number, LONG_ID, "message_tree_id"))
            tree_id = None
        state = value.get("tree_state")
        if state is not None and not (isinstance(state, str) and _storable(state)):
            problems.append(ImportProblem(number, "expected a string", "tree_state"))
        root = value.get("prompt")
        if not isinstance(root, dict):
            why = "missing" if root is None else f"expected an object, got {_kind(root)}"
            problems.append(ImportProblem(number, why, "prompt"))
        elif tree_id in tree_ids:
            report.duplicates += 1  # the same tree twice in one file
        elif tree_id is not None:
            tree_ids.add(tree_id)
            tree = _Tree(line=number, tree_id=tree_id, state=state)
            report.deleted += _walk(tree, root, rules, message_lines, problems)
            trees.append(tree)
    return trees


def _walk(tree: _Tree, root: dict, rules: _Rules, message_lines: dict, problems: list) -> int:
    """Check the tree's nodes breadth first into `tree.nodes`; the number of deleted messages.

    Field names in problems are paths such as `prompt.replies[1].text`. A deleted node is left
    out with its replies; a broken node is reported and its replies are not checked.
    """
    line, deleted = tree.line, 0
    queue: deque = deque([(root, None, "prompt.")])
    while queue:
        raw, parent, path = queue.popleft()
        before = len(problems)

        def bad(message: str, name: str, path: str = path) -> None:
            problems.append(ImportProblem(line, message, path + name))

        if not isinstance(raw, dict):
            bad(f"expected an object, got {_kind(raw)}", "", path[:-1])
            continue
        if raw.get("deleted") is True:
            deleted += _count_nodes(raw)
            continue
        message_id = _text_field(raw, "message_id", line, problems, rules, path=path)
        if message_id is not None and len(message_id) > EXTERNAL_ID_MAX:
            bad(LONG_ID, "message_id")
        elif message_id in message_lines:
            bad(f"{message_id} also appears on line {message_lines[message_id]}", "message_id")
        elif message_id is not None:
            message_lines[message_id] = line
        text = _text_field(raw, "text", line, problems, rules, path=path)
        lang = _lang_field(raw, line, problems, rules, path=path)
        above = tree.nodes[parent] if parent is not None else None
        role = OA_ROLES.get(raw.get("role"))
        if role is None:
            bad(f"expected 'prompter' or 'assistant', got {raw.get('role')!r}", "role")
        elif role not in NEXT_ROLES[above.role if above else None]:
            after = f"after a {above.role} turn" if above else "as the first turn"
            bad(f"a {role} turn cannot come {after}", "role")
        parent_id = raw.get("parent_id")
        if above and parent_id is not None and parent_id != above.external_id:
            bad(f"{parent_id!r} is not the message it replies to", "parent_id")
        rank = raw.get("rank")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int)):
            bad(f"expected a whole number or null, got {_kind(rank)}", "rank")
        # A model-written message gets the model as its author, registered by this name.
        synthetic = raw.get("synthetic") is True
        model_name = raw.get("model_name") if synthetic else None
        if model_name is not None and not (
            isinstance(model_name, str)
            and len(model_name) <= MODEL_NAME_MAX
            and MODEL_NAME.match(model_name)
        ):
            bad(f"{model_name!r} is not a valid model name", "model_name")
        replies = raw.get("replies") or []
        if not isinstance(replies, list):
            bad(f"expected an array, got {_kind(replies)}", "replies")
        meta = {key: raw[key] for key in OA_META_KEYS if key in raw}
        if not _storable(meta):
            why = "a review field holds a NUL, a broken \\u escape or a non-finite number"
            bad(why, "", path[:-1])
        if len(problems) > before:
            continue
        tree.nodes.append(
            _Node(
                parent=parent,
                role=role,
                text=text,
                lang=lang,
                depth=above.depth + 1 if above else 0,
                external_id=message_id,
                is_synthetic=synthetic,
                model_name=model_name,
                rank=rank,
                meta=meta,
            )
        )
        index = len(tree.nodes) - 1
        queue.extend((reply, index, f"{path}replies[{i}].") for i, reply in enumerate(replies))
    return deleted


def _count_nodes(raw) -> int:
    count, stack = 0, [raw]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += 1
            replies = node.get("replies")
            if isinstance(replies, list):
                stack.extend(replies)
    return count


def ranked_groups(nodes: list[_Node]) -> dict[int, list[int]]:
    """Parent index -> indices of its replies that carry a rank, where two or more do."""
    ranked: dict[int, list[int]] = defaultdict(list)
    for index, node in enumerate(nodes):
        if node.parent is not None and node.rank is not None:
            ranked[node.parent].append(index)
    return {parent: children for parent, children in ranked.items() if len(children) >= 2}


def _store_trees(project: Project, trees: list[_Tree], context: dict, report: ImportReport):
    with transaction.atomic():
        _lock(project)
        existing = set(
            Conversation.objects.filter(project=project)
            .exclude(external_id="")
            .values_list("external_id", flat=True)
        )
        fresh = [tree for tree in trees if tree.tree_id not in existing and tree.nodes]
        report.duplicates += sum(1 for tree in trees if tree.tree_id in existing)
        models = {
            name: ModelVersion.objects.get_or_create(
                name=name,
                defaults={"kind": ModelVersion.Kind.POLICY, "source": name, "notes": "imported"},
            )[0]
            for name in sorted({n.model_name for t in fresh for n in t.nodes if n.model_name})
        }
        conversations = Conversation.objects.bulk_create(
            [
                Conversation(
                    project=project,
                    source=Conversation.Source.IMPORT,
                    external_id=tree.tree_id,
                    meta={"tree_state": tree.state, "import": {**context, "line": tree.line}},
                )
                for tree in fresh
            ],
            batch_size=BATCH_SIZE,
        )
        # Level by level: the database insists that a parent exists (in the same conversation)
        # before its replies, and each level's ids come back from its bulk insert.
        levels: dict[int, list[tuple[_Tree, _Node, int]]] = defaultdict(list)
        for tree, conversation in zip(fresh, conversations, strict=True):
            for node in tree.nodes:
                levels[node.depth].append((tree, node, conversation.pk))
        for depth in sorted(levels):
            rows = levels[depth]
            created = Message.objects.bulk_create(
                [
                    Message(
                        conversation_id=conversation_id,
                        parent_id=tree.nodes[node.parent].pk if node.parent is not None else None,
                        role=node.role,
                        text=node.text,
                        lang=node.lang,
                        depth=node.depth,
                        author_model=models.get(node.model_name),
                        is_synthetic=node.is_synthetic,
                        external_id=node.external_id,
                        meta=node.meta,
                    )
                    for tree, node, conversation_id in rows
                ],
                batch_size=BATCH_SIZE,
            )
            for (_, node, _), message in zip(rows, created, strict=True):
                node.pk = message.pk
            report.messages += len(created)
        _store_rankings(project, fresh, report)
    report.imported = report.conversations = len(fresh)


def _store_rankings(project: Project, trees: list[_Tree], report: ImportReport) -> None:
    now = timezone.now()
    sets, orders = [], []
    for tree in trees:
        for parent, children in ranked_groups(tree.nodes).items():
            ranks = sorted({tree.nodes[i].rank for i in children})
            # Best first; replies with equal ranks form one tie group.
            order = [[tree.nodes[i].pk for i in children if tree.nodes[i].rank == r] for r in ranks]
            candidates = [tree.nodes[i].pk for i in children]
            sets.append(
                RankingSet(
                    project=project,
                    context_id=tree.nodes[parent].pk,
                    state=RankingSet.State.COMPLETE,
                    rankings_needed=1,
                    rankings_count=1,
                    consensus=order,
                    completed_at=now,
                )
            )
            orders.append((order, candidates))
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
    report.ranking_sets = len(created)
