"""Reads of the data explorer's conversations: the filtered, searched list and one whole tree.

Search is PostgreSQL's full-text search over the messages' text (`websearch` syntax: words,
"quoted phrases", -excluded words); other databases (SQLite) fall back to a case-insensitive
substring match of the whole query.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Subquery

from annotations.audit import audit_log
from annotations.models import (
    AuditEntry,
    Conversation,
    Label,
    Message,
    Project,
    PromptReport,
    RankingCandidate,
    RankingSet,
)

# Flags a list can be narrowed to besides the project's own flag labels.
REPORTED = "reported"
EXCLUDED = "excluded"
MAX_INDENT = 12


@dataclass(frozen=True)
class ExplorerFilters:
    """What a lead narrowed a list to; empty values filter nothing."""

    q: str = ""
    source: str = ""
    author: str = ""  # a person's username
    model: str = ""  # a model version's name
    lang: str = ""
    flag: str = ""  # a flag label's name, REPORTED or EXCLUDED
    since: dt.date | None = None
    until: dt.date | None = None


# The text search configurations the explorer picks from. Each has a GIN index on exactly
# `search_vector(config)` (annotations migration 0010): a new one needs its index too.
SEARCH_CONFIGS = ("english", "simple")


def search_config(project: Project) -> str:
    """The text search configuration: English stemming for English-only projects, else none."""
    return "english" if list(project.languages or []) == ["en"] else "simple"


def search_vector(config: str) -> SearchVector:
    """A message's searchable text: `to_tsvector('<config>', COALESCE(text, ''))`, the
    expression the search indexes hold (any other spelling would not use them)."""
    if config not in SEARCH_CONFIGS:
        raise ValueError(f"No search index for the text search configuration {config!r}")
    return SearchVector("text", config=config)


def messages_matching(messages: QuerySet[Message], query: str, *, config: str) -> QuerySet[Message]:
    """The messages whose text matches the search query (full-text search on PostgreSQL)."""
    query = query.strip()
    if not query:
        return messages
    if connection.vendor == "postgresql":
        return messages.annotate(search=search_vector(config)).filter(
            search=SearchQuery(query, config=config, search_type="websearch")
        )
    return messages.filter(text__icontains=query)


# Larger than any table: as a subquery's LIMIT it keeps every row (see `found_once`).
NO_LIMIT = 2**63 - 1


def found_once(matching: QuerySet, field_name: str) -> QuerySet:
    """The `field_name` values of the `matching` rows, as a subquery to filter with (`pk__in`),
    planned on its own: PostgreSQL reads the matches once, through the search index, and the
    semi-join with the list drops their duplicates (no DISTINCT to hash first).

    Merged into the list's query under a LIMIT (a page, a capped count), the condition lets the
    planner walk the list instead, computing text vectors row by row until enough rows matched:
    it prices a text vector far below its cost, and the walk takes seconds when the matches are
    rare among the newest rows. A subquery with a LIMIT is never merged; this one keeps every
    row. (Where most rows match, walking is cheaper: `NewestFirst` does it, within a bound.)
    """
    return matching.order_by().values(field_name)[:NO_LIMIT]


def day_range(field_name: str, filters: ExplorerFilters) -> Q:
    """Inclusive calendar days (UTC) of the filters' since and until on `field_name`."""
    condition = Q()
    if filters.since:
        start = dt.datetime.combine(filters.since, dt.time.min, tzinfo=dt.UTC)
        condition &= Q(**{f"{field_name}__gte": start})
    if filters.until:
        end = dt.datetime.combine(filters.until + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
        condition &= Q(**{f"{field_name}__lt": end})
    return condition


def message_conditions(project: Project, filters: ExplorerFilters) -> QuerySet[Message] | None:
    """The messages that match the message-level filters, or None when none is set; any
    project's: the caller keeps its own conversations (a join to the project would only cost)."""
    messages = Message.objects.all()
    narrowed = False
    if filters.author:
        messages = messages.filter(author_user__username=filters.author)
        narrowed = True
    if filters.model:
        messages = messages.filter(author_model__name=filters.model)
        narrowed = True
    if filters.lang:
        messages = messages.filter(lang=filters.lang)
        narrowed = True
    if filters.flag == REPORTED:
        messages = messages.filter(Exists(PromptReport.objects.filter(message=OuterRef("pk"))))
        narrowed = True
    elif filters.flag == EXCLUDED:
        messages = messages.filter(is_excluded=True)
        narrowed = True
    elif filters.flag:
        labelled = Label.objects.filter(message=OuterRef("pk"), name=filters.flag, value__gte=1)
        messages = messages.filter(Exists(labelled))
        narrowed = True
    if filters.q.strip():
        messages = messages_matching(messages, filters.q, config=search_config(project))
        narrowed = True
    return messages if narrowed else None


@dataclass(frozen=True)
class NewestFirst:
    """A searched list read the other way round: its newest rows without the search, each
    checked for it on its own (a text vector or three a row, no index).

    Far cheaper than reading every match through the index when most rows match (a page of a
    word in every conversation), far dearer when few do; `among_newest` bounds what it reads.
    """

    unsearched: QuerySet  # the list with every filter but the search, newest first
    matches: Exists | Q  # the search, on one row of it

    def among_newest(self, window: int) -> QuerySet:
        """The rows among the unsearched list's newest `window` that match, newest first: the
        list's first rows whenever as many match as the caller needs."""
        newest = self.unsearched.values("pk")[:window]
        return self.unsearched.filter(pk__in=newest).filter(self.matches)


def _conversations(project: Project, filters: ExplorerFilters) -> QuerySet[Conversation]:
    conversations = Conversation.objects.filter(project=project).filter(
        day_range("created_at", filters)
    )
    if filters.source:
        conversations = conversations.filter(source=filters.source)
    return conversations.order_by("-created_at", "-id")


def conversations_explored(*, project: Project, filters: ExplorerFilters) -> QuerySet[Conversation]:
    """The project's conversations that hold a message matching every message filter, newest
    first (`with_summaries` adds what the list shows of each)."""
    conversations = _conversations(project, filters)
    matching = message_conditions(project, filters)
    if matching is not None and filters.q.strip():
        conversations = conversations.filter(pk__in=found_once(matching, "conversation_id"))
    elif matching is not None:
        conversations = conversations.filter(
            Exists(matching.filter(conversation=OuterRef("pk")).values("pk"))
        )
    return conversations


def conversations_newest_first(*, project: Project, filters: ExplorerFilters) -> NewestFirst | None:
    """`conversations_explored` read newest first (see `NewestFirst`); None without a search."""
    matching = message_conditions(project, filters)
    if matching is None or not filters.q.strip():
        return None
    return NewestFirst(
        unsearched=_conversations(project, filters),
        matches=Exists(matching.filter(conversation=OuterRef("pk")).values("pk")),
    )


def with_summaries(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """The conversations (a page of them) with their first message's text, message count and
    last activity.

    Per-row subqueries rather than a join and GROUP BY, and applied to a page's rows alone (not
    to the filtered list, which the database would then summarise row by row as it skips to a
    deep page).
    """
    own = Message.objects.filter(conversation=OuterRef("pk")).order_by().values("conversation")
    first = Message.objects.filter(conversation=OuterRef("pk"), parent=None).order_by("id")
    return conversations.annotate(
        first_text=Subquery(first.values("text")[:1]),
        message_count=Subquery(own.annotate(n=Count("pk")).values("n")),
        last_message_at=Subquery(own.annotate(last=Max("created_at")).values("last")),
    ).select_related("created_by")


# ---------------------------------------------------------------------------- one tree


@dataclass
class TreeNode:
    """One message of a conversation tree, with what the explorer shows beside it."""

    message: Message
    depth: int
    author: str
    labels: list[Label] = field(default_factory=list)
    reports: list[PromptReport] = field(default_factory=list)
    context_of: list[int] = field(default_factory=list)  # ranking sets cut after it
    candidate_in: list[int] = field(default_factory=list)  # ranking sets it is a reply of
    exclusion: AuditEntry | None = None  # the entry that excluded it, while it is excluded
    matches: bool = False  # matches the search query

    @property
    def is_model(self) -> bool:
        return self.message.is_synthetic

    @property
    def indent(self) -> int:
        """How far the page indents it: its depth, up to a limit that keeps text readable."""
        return min(self.depth, MAX_INDENT)


def message_author(message: Message) -> str:
    """Who wrote a message, in words: a username, a model's name, or how it came in."""
    if message.author_user_id:
        return message.author_user.get_username()
    if message.author_model_id:
        return message.author_model.name
    return "a model (imported)" if message.is_synthetic else "a person (imported)"


def conversation_for_explorer(*, project: Project, pk: int) -> Conversation | None:
    return Conversation.objects.filter(project=project, pk=pk).select_related("created_by").first()


def conversation_tree(*, conversation: Conversation, query: str = "") -> list[TreeNode]:
    """Every message of the conversation, depth first (siblings oldest first), each with its
    labels, reports, ranking sets and, when excluded, the audit entry saying why."""
    messages = list(
        Message.objects.filter(conversation=conversation)
        .select_related("author_user", "author_model", "draft__author_model")
        .order_by("depth", "id")
    )
    ids = [m.pk for m in messages]
    labels: dict[int, list[Label]] = defaultdict(list)
    for label in Label.objects.filter(message_id__in=ids).select_related("annotator"):
        labels[label.message_id].append(label)
    reports: dict[int, list[PromptReport]] = defaultdict(list)
    for report in PromptReport.objects.filter(message_id__in=ids).select_related("reporter"):
        reports[report.message_id].append(report)
    contexts: dict[int, list[int]] = defaultdict(list)
    for set_id, context_id in RankingSet.objects.filter(context_id__in=ids).values_list(
        "pk", "context_id"
    ):
        contexts[context_id].append(set_id)
    candidates: dict[int, list[int]] = defaultdict(list)
    for set_id, message_id in RankingCandidate.objects.filter(message_id__in=ids).values_list(
        "ranking_set_id", "message_id"
    ):
        candidates[message_id].append(set_id)
    excluded = {m.pk for m in messages if m.is_excluded}
    exclusions = exclusion_entries(conversation.project, excluded)
    matches: set[int] = set()
    if query.strip():
        matches = set(
            messages_matching(
                Message.objects.filter(conversation=conversation),
                query,
                config=search_config(conversation.project),
            ).values_list("pk", flat=True)
        )
    children: dict[int | None, list[Message]] = defaultdict(list)
    for message in messages:
        children[message.parent_id].append(message)
    nodes: list[TreeNode] = []
    stack = [(m, 0) for m in reversed(children[None])]
    while stack:
        message, depth = stack.pop()
        nodes.append(
            TreeNode(
                message=message,
                depth=depth,
                author=message_author(message),
                labels=labels[message.pk],
                reports=reports[message.pk],
                context_of=sorted(contexts[message.pk]),
                candidate_in=sorted(candidates[message.pk]),
                exclusion=exclusions.get(message.pk),
                matches=message.pk in matches,
            )
        )
        stack.extend((child, depth + 1) for child in reversed(children[message.pk]))
    return nodes


def exclusion_entries(project: Project, message_ids: set[int]) -> dict[int, AuditEntry]:
    """For each excluded message, the latest audit entry that excluded it."""
    if not message_ids:
        return {}
    targets = {f"message {pk}": pk for pk in message_ids}
    found: dict[int, AuditEntry] = {}
    for entry in audit_log(project, actions=["message.exclude"]).filter(target__in=targets):
        found.setdefault(targets[entry.target], entry)  # newest first
    return found


def tree_node(*, message: Message) -> TreeNode:
    """One message as the tree shows it (after its exclusion changed)."""
    conversation = message.conversation
    for node in conversation_tree(conversation=conversation):
        if node.message.pk == message.pk:
            return node
    raise LookupError(message.pk)


@dataclass(frozen=True)
class ExplorerChoices:
    """What the filter forms offer: the project's authors, models, languages and flag labels."""

    authors: list[str]
    models: list[str]
    languages: list[str]
    flags: list[str]


# Listing who wrote a project's messages, with which models, in which languages, reads every one
# of them (a second or so for a million messages): the forms' choices are kept this long. A view
# that meets a value missing from kept choices asks again with `fresh=True` before refusing it.
CHOICES_CACHE_SECONDS = 300


def choices_cache_key(kind: str, project: Project) -> str:
    # The creation time too, so that a project made again under a reused id starts afresh.
    return f"explorer-{kind}:{project.pk}:{project.created_at.timestamp()}"


def explorer_choices(project: Project, *, fresh: bool = False) -> ExplorerChoices:
    """What the filter forms offer; what comes from the messages is kept for
    CHOICES_CACHE_SECONDS unless `fresh` (the project's own settings are read each time)."""
    key = choices_cache_key("choices", project)
    written = None if fresh else cache.get(key)
    if written is None:
        messages = Message.objects.filter(conversation__project=project).order_by()

        def distinct(field_name: str) -> list[str]:
            values = messages.filter(**{f"{field_name}__isnull": False}).values_list(
                field_name, flat=True
            )
            return sorted(set(values.distinct()))

        written = {
            "authors": distinct("author_user__username"),
            "models": distinct("author_model__name"),
            "languages": distinct("lang"),
        }
        cache.set(key, written, CHOICES_CACHE_SECONDS)
    return ExplorerChoices(
        authors=written["authors"],
        models=written["models"],
        languages=sorted({*written["languages"], *(project.languages or [])} - {""}),
        flags=[
            label["name"] for label in project.label_schema or [] if label.get("kind") == "flag"
        ],
    )
