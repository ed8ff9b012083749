"""What every dataset builder shares: the rows they yield, what never leaves, chunked reads of
the core's tables, message threads and the JSON pieces rows are assembled from."""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring as encode_string
from typing import Any, NamedTuple, TypeVar

from django.db import connection, connections
from django.db.models import Q, QuerySet

from annotations.models import (
    Conversation,
    Label,
    Membership,
    Message,
    ModelVersion,
    Project,
    Ranking,
)
from annotations.reports import reported_prompt_ids
from annotations.timestamps import iso_utc
from exports.choices import ExportChoices
from exports.pseudonyms import Pseudonyms, is_pseudonym

T = TypeVar("T")
_COUNT_LOCK = threading.Lock()
SCRATCH_KEY = "scratch_for_task"  # demonstrations mark unsubmitted working turns with it
CHUNK = 1000

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def dumps(value: Any) -> str:
    """Compact UTF-8 JSON, the same bytes for the same value every time."""
    return _dumps(value)


class Row(NamedTuple):
    """JSONL lines of one conversation, with what the writer needs to place and count them.

    Usually one line; a builder may join several lines of the same conversation with newlines
    (`count` of them), which the writer treats as that many rows.
    """

    conversation_id: int
    line: str  # one JSON object (or `count` of them joined by "\n"), without the final newline
    source: str = ""  # where the conversation came from (sft and prompts: counted per source)
    count: int = 1
    longer: int = 0  # preferences: pairs whose chosen reply is the longer one
    shorter: int = 0  # preferences: pairs whose chosen reply is the shorter one


@dataclass
class ExportContext:
    """The project, the checked choices and the lookups every builder needs, read once."""

    project: Project
    choices: ExportChoices
    excluded_annotators: frozenset[int] = frozenset()
    pseudonyms: Pseudonyms = field(init=False)
    model_names: dict[int, str] = field(init=False)
    model_ids: frozenset[int] | None = field(init=False)
    reported_conversations: frozenset[int] = field(init=False)
    scratch_messages: frozenset[int] = field(init=False)
    excluded_messages: frozenset[int] = field(init=False)
    counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pseudonyms = Pseudonyms(self.project.pk)
        self.model_names = dict(ModelVersion.objects.values_list("id", "name"))
        wanted = set(self.choices.model_versions)
        self.model_ids = (
            frozenset(pk for pk, name in self.model_names.items() if name in wanted)
            if wanted
            else None
        )
        # A reported prompt takes its whole conversation out: every row built on it.
        self.reported_conversations = frozenset(
            Message.objects.filter(pk__in=reported_prompt_ids(self.project)).values_list(
                "conversation_id", flat=True
            )
        )
        self.scratch_messages = frozenset(
            Message.objects.filter(
                conversation__project=self.project, meta__has_key=SCRATCH_KEY
            ).values_list("id", flat=True)
        )
        # Messages a lead left out: every row built on one (a thread through it, a set that
        # shows it) stays out too.
        self.excluded_messages = frozenset(
            Message.objects.filter(
                conversation__project=self.project, is_excluded=True
            ).values_list("id", flat=True)
        )

    def count(self, name: str, n: int = 1) -> None:
        if not n:
            return
        # Builders count from their read-ahead thread too.
        with _COUNT_LOCK:
            self.counters[name] = self.counters.get(name, 0) + n

    def keeps_model(self, author_model_id: int | None) -> bool:
        """Whether a candidate by this model (None: a person) passes `model_versions`."""
        if self.model_ids is None:
            return True
        if author_model_id is None:
            return "human" in self.choices.model_versions
        return author_model_id in self.model_ids

    def model_name(self, author_model_id: int | None) -> str | None:
        return self.model_names.get(author_model_id) if author_model_id else None


def date_filter(field_name: str, choices: ExportChoices) -> Q:
    """Inclusive calendar days (UTC) on `field_name`."""
    q = Q()
    if choices.since:
        q &= Q(**{f"{field_name}__gte": _midnight(choices.since)})
    if choices.until:
        q &= Q(**{f"{field_name}__lt": _midnight(choices.until + dt.timedelta(days=1))})
    return q


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    return iso_utc(value)


def keyset_chunks(queryset: QuerySet, fields: Iterable[str], size: int = CHUNK) -> Iterator[list]:
    """The queryset's rows as value tuples (pk first), `size` at a time in primary-key order.

    Each chunk is one indexed query that starts after the last key seen, so memory stays flat
    and the cost per chunk does not grow with how far the export has got.
    """
    fields = list(fields)
    last = None
    while True:
        page = queryset.order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        rows = list(page.values_list("pk", *fields)[:size])
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def read_ahead(produce: Callable[[], Iterator[T]], *, depth: int = 2) -> Iterator[T]:
    """The items of `produce()`, computed in a thread of their own up to `depth` ahead.

    Builders read a chunk from the database while the previous one is turned into JSON:
    the thread waits on PostgreSQL (which releases the interpreter lock) while this one works.
    The thread has its own database connection, which cannot see the rows of a transaction
    still open here, so inside one (tests, a caller's atomic block) everything runs in line.
    """
    if connection.in_atomic_block:
        yield from produce()
        return
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in produce():
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put(("error", exc))
        finally:
            connections.close_all()  # this thread's connections only

    worker = threading.Thread(target=work, name="export-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = handoff.get()
            if kind == "item":
                yield item
            elif kind == "end":
                return
            else:
                raise item
    finally:
        stop.set()
        worker.join(timeout=30)


def flagged_messages(message_ids: Iterable[int], names: Iterable[str]) -> set[int]:
    """Messages carrying any of these flag labels (a Label of value 1 or more)."""
    names = list(names)
    if not names:
        return set()
    return set(
        Label.objects.filter(message_id__in=list(message_ids), name__in=names, value__gte=1)
        .values_list("message_id", flat=True)
        .distinct()
    )


def source_of(conversation_source: str, conversation_meta: dict | None) -> str:
    """Where a conversation's prompt came from: the dataset its import named, else how it came
    in (prompts kind)."""
    name = (conversation_meta or {}).get("dataset")
    return name if isinstance(name, str) and name else conversation_source


def demonstration_source(conversation_source: str, conversation_meta: dict | None) -> str:
    """Who wrote a conversation's replies (sft kind): an imported dataset by its name, else
    `demonstration` for dialogues written here (also those continuing a pool prompt, whose
    conversation keeps the prompt file's name) or `api`."""
    if conversation_source == Conversation.Source.IMPORT:
        return source_of(conversation_source, conversation_meta)
    if conversation_source == Conversation.Source.PROMPT:
        return Conversation.Source.DEMONSTRATION.value
    return str(conversation_source)


class Threads:
    """Ancestor chains of messages, fetched a level at a time for many messages at once."""

    def __init__(self) -> None:
        self._nodes: dict[int, tuple[int | None, str, str]] = {}
        self._json: dict[int, str] = {}

    def load(self, message_ids: Iterable[int]) -> None:
        missing = {pk for pk in message_ids if pk not in self._nodes}
        while missing:
            parents: set[int] = set()
            for pk, parent_id, role, text in Message.objects.filter(pk__in=missing).values_list(
                "id", "parent_id", "role", "text"
            ):
                self._nodes[pk] = (parent_id, role, text)
                if parent_id is not None and parent_id not in self._nodes:
                    parents.add(parent_id)
            missing = parents

    def chain(self, message_id: int) -> list[int]:
        """Ids from the root down to `message_id`."""
        ids: list[int] = []
        current: int | None = message_id
        while current is not None:
            ids.append(current)
            current = self._nodes[current][0]
        ids.reverse()
        return ids

    def messages_json(self, message_id: int) -> str:
        """The thread root..message as a JSON list of {"role", "content"}."""
        cached = self._json.get(message_id)
        if cached is None:
            nodes = self._nodes
            # Roles are fixed names; only the text needs escaping.
            cached = (
                "["
                + ",".join(
                    f'{{"role":"{nodes[pk][1]}","content":{encode_string(nodes[pk][2])}}}'
                    for pk in self.chain(message_id)
                )
                + "]"
            )
            self._json[message_id] = cached
        return cached


def resolve_annotators(project: Project, names: Iterable[str]) -> frozenset[int]:
    """User ids for usernames or pseudonyms of the project's members; unknown names are an error.

    Raises ValueError naming the first unknown one (the caller turns it into a field error).
    """
    names = list(names)
    if not names:
        return frozenset()
    pseudonyms = Pseudonyms(project.pk)
    members = list(
        Membership.objects.filter(project=project).values_list("user_id", "user__username")
    )
    # Rankings and demonstrations may outlive a membership: former members count too.
    authors = set(
        Message.objects.filter(conversation__project=project, author_user__isnull=False)
        .values_list("author_user_id", flat=True)
        .distinct()
    )
    authors |= set(
        Ranking.objects.filter(ranking_set__project=project, annotator__isnull=False)
        .order_by()
        .values_list("annotator_id", flat=True)
        .distinct()
    )
    by_name = {username: user_id for user_id, username in members}
    by_pseudonym = {pseudonyms(uid): uid for uid in {*by_name.values(), *authors}}
    found: set[int] = set()
    for name in names:
        if is_pseudonym(name) and name in by_pseudonym:
            found.add(by_pseudonym[name])
        elif name in by_name:
            found.add(by_name[name])
        else:
            raise ValueError(f"{name[:50]!r} is neither a member's username nor a pseudonym here.")
    return frozenset(found)
