"""Reads of the data explorer's ranking sets: the filtered, searched list and one set with every
trainer's order beside the consensus.

Rankings are private while they can still sway someone: a viewer who may still rank a set
(a member who annotates, has not ranked it and did not write its context or a candidate) sees
none of its rankings until it is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery

from annotations.access import can
from annotations.agreement import agreement_with_consensus
from annotations.audit import audit_log
from annotations.explorer import (
    CHOICES_CACHE_SECONDS,
    EXCLUDED,
    NO_LIMIT,
    REPORTED,
    ExplorerFilters,
    NewestFirst,
    choices_cache_key,
    day_range,
    found_once,
    message_author,
    messages_matching,
    search_config,
)
from annotations.models import (
    AuditEntry,
    Label,
    Message,
    Project,
    PromptReport,
    Ranking,
    RankingCandidate,
    RankingSet,
)
from annotations.reliability import order_ranks
from annotations.selectors import thread_to

ALL_BAD = "all_bad"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class SetFilters(ExplorerFilters):
    """The explorer's filters, plus a set's state and a range of its agreement (0..1).

    `author` is someone who ranked the set; `model`, a model that wrote one of its candidates.
    """

    state: str = ""
    min_agreement: float | None = None
    max_agreement: float | None = None


def _ranking_sets(project: Project, filters: SetFilters) -> QuerySet[RankingSet]:
    """The project's ranking sets that match every filter but the search, newest first."""
    sets = RankingSet.objects.filter(project=project).filter(day_range("created_at", filters))
    if filters.state:
        sets = sets.filter(state=filters.state)
    if filters.source:
        sets = sets.filter(context__conversation__source=filters.source)
    if filters.lang:
        sets = sets.filter(context__lang=filters.lang)
    if filters.min_agreement is not None:
        sets = sets.filter(agreement__gte=filters.min_agreement)
    if filters.max_agreement is not None:
        sets = sets.filter(agreement__lte=filters.max_agreement)
    if filters.author:
        ranked = Ranking.objects.filter(
            ranking_set=OuterRef("pk"), annotator__username=filters.author
        )
        sets = sets.filter(Exists(ranked))
    candidates = RankingCandidate.objects.filter(ranking_set=OuterRef("pk"))
    if filters.model:
        sets = sets.filter(Exists(candidates.filter(message__author_model__name=filters.model)))
    if filters.flag == ALL_BAD:
        sets = sets.filter(Exists(Ranking.objects.filter(ranking_set=OuterRef("pk"), all_bad=True)))
    elif filters.flag == EXCLUDED:
        excluded_ranking = Ranking.objects.filter(ranking_set=OuterRef("pk"), is_excluded=True)
        sets = sets.filter(
            Exists(excluded_ranking) | Exists(candidates.filter(message__is_excluded=True))
        )
    elif filters.flag == REPORTED:
        reported = PromptReport.objects.filter(
            message__conversation_id=OuterRef("context__conversation_id")
        )
        sets = sets.filter(Exists(reported))
    elif filters.flag:
        labelled = Label.objects.filter(
            message_id=OuterRef("message_id"), name=filters.flag, value__gte=1
        )
        sets = sets.filter(Exists(candidates.filter(Exists(labelled))))
    return sets.order_by("-created_at", "-id")


def ranking_sets_explored(*, project: Project, filters: SetFilters) -> QuerySet[RankingSet]:
    """The project's ranking sets that match every filter, newest first
    (`with_candidate_counts` adds what the list shows of each)."""
    sets = _ranking_sets(project, filters)
    if filters.q.strip():
        # Any project's messages (the sets are the project's own already), read through the
        # search index (see `found_once`).
        matching = found_once(
            messages_matching(Message.objects.all(), filters.q, config=search_config(project)),
            "pk",
        )
        # The sets whose context or a candidate matches: one union, computed once (an OR of
        # the two would be checked set by set); the semi-join drops its duplicates.
        by_context = RankingSet.objects.filter(project=project, context_id__in=matching)
        by_candidate = RankingCandidate.objects.filter(message_id__in=matching)
        found = (
            by_context.order_by()
            .values("pk")
            .union(by_candidate.order_by().values("ranking_set_id"), all=True)
        )
        sets = sets.filter(pk__in=found[:NO_LIMIT])
    return sets


def ranking_sets_newest_first(*, project: Project, filters: SetFilters) -> NewestFirst | None:
    """`ranking_sets_explored` read newest first (see `NewestFirst`); None without a search."""
    if not filters.q.strip():
        return None
    config = search_config(project)

    def matches(message_id: OuterRef) -> Exists:
        one = Message.objects.filter(pk=message_id)
        return Exists(messages_matching(one, filters.q, config=config).values("pk"))

    candidates = RankingCandidate.objects.filter(ranking_set=OuterRef("pk"))
    return NewestFirst(
        unsearched=_ranking_sets(project, filters),
        matches=matches(OuterRef("context_id"))
        | Exists(candidates.filter(matches(OuterRef("message_id")))),
    )


def with_candidate_counts(sets: QuerySet[RankingSet]) -> QuerySet[RankingSet]:
    """The sets (a page of them) with their context and candidate count (see `with_summaries`)."""
    entries = RankingCandidate.objects.filter(ranking_set=OuterRef("pk")).order_by()
    return sets.select_related("context").annotate(
        candidate_count=Subquery(entries.values("ranking_set").annotate(n=Count("pk")).values("n"))
    )


def may_still_rank(user: AbstractBaseUser, ranking_set: RankingSet) -> bool:
    """Whether `user` could yet be handed this set to rank: its rankings must stay hidden."""
    if ranking_set.state not in (RankingSet.State.SAMPLING, RankingSet.State.COLLECTING):
        return False
    if not can(user, ranking_set.project, "annotate"):
        return False
    if ranking_set.authors.filter(pk=user.pk).exists():
        return False
    return not Ranking.objects.filter(ranking_set=ranking_set, annotator_id=user.pk).exists()


@dataclass
class SetCandidate:
    letter: str
    message: Message
    author: str
    consensus_rank: int | None


@dataclass
class SetRankingRow:
    """One trainer's ranking: the rank it gives each candidate (in the set's candidate order)."""

    ranking: Ranking
    annotator: str
    ranks: list[int | None]
    flags: list[tuple[str, list[str]]]  # (candidate letter, flag names), flagged ones only
    agreement: float | None  # with the consensus of the set's other kept rankings
    exclusion: AuditEntry | None = None


@dataclass
class RankCell:
    rank: int | None
    excluded: bool


@dataclass
class CandidateRow:
    """A candidate with the rank each trainer gave it, in the order of `SetView.rankings`."""

    candidate: SetCandidate
    cells: list[RankCell]


@dataclass
class SetView:
    ranking_set: RankingSet
    thread: list[Message]
    candidates: list[SetCandidate]
    rankings: list[SetRankingRow] = field(default_factory=list)
    hidden: bool = False  # the viewer may still rank the set: no ranking is shown

    @property
    def matrix(self) -> list[CandidateRow]:
        return [
            CandidateRow(
                candidate,
                [RankCell(row.ranks[i], row.ranking.is_excluded) for row in self.rankings],
            )
            for i, candidate in enumerate(self.candidates)
        ]


def ranks_of(order: list[list[int]], candidate_ids: list[int]) -> list[int | None]:
    """The rank an order gives each candidate, as `order_ranks` computes it for every page
    (1 = best; a tie group takes its first rank, so a tie for second is followed by fourth).
    An order that is not a list of groups of distinct ids (a damaged import) ranks nothing."""
    try:
        rank = order_ranks(order or [])
    except (ValueError, TypeError):
        rank = {}
    return [rank.get(pk) for pk in candidate_ids]


def ranking_set_for_explorer(*, project: Project, pk: int) -> RankingSet | None:
    return (
        RankingSet.objects.filter(project=project, pk=pk)
        .select_related("project", "context__conversation")
        .first()
    )


def ranking_set_view(*, ranking_set: RankingSet, viewer: AbstractBaseUser) -> SetView:
    entries = list(
        RankingCandidate.objects.filter(ranking_set=ranking_set)
        .select_related("message__author_user", "message__author_model")
        .order_by("position")
    )
    ids = [entry.message_id for entry in entries]
    consensus = ranks_of(ranking_set.consensus or [], ids)
    candidates = [
        SetCandidate(LETTERS[i % len(LETTERS)], e.message, message_author(e.message), consensus[i])
        for i, e in enumerate(entries)
    ]
    view = SetView(
        ranking_set=ranking_set, thread=thread_to(ranking_set.context), candidates=candidates
    )
    if may_still_rank(viewer, ranking_set):
        view.hidden = True
        return view
    rankings = list(
        Ranking.objects.filter(ranking_set=ranking_set)
        .select_related("annotator", "rewrite")
        .order_by("created_at", "id")
    )
    exclusions = ranking_exclusions(ranking_set.project, [r for r in rankings if r.is_excluded])
    for ranking in rankings:
        others = [r.order for r in rankings if r.pk != ranking.pk and not r.is_excluded]
        agreement = ranking.consensus_agreement
        if agreement is None:
            agreement = agreement_with_consensus(ranking.order, others, ids)
        flags = ranking.flags or {}
        view.rankings.append(
            SetRankingRow(
                ranking=ranking,
                annotator=ranking.annotator.get_username() if ranking.annotator else "import",
                ranks=ranks_of(ranking.order, ids),
                flags=[
                    (c.letter, sorted(flags[str(c.message.pk)]))
                    for c in candidates
                    if flags.get(str(c.message.pk))
                ],
                agreement=agreement,
                exclusion=exclusions.get(ranking.pk),
            )
        )
    return view


def ranking_exclusions(project: Project, rankings: list[Ranking]) -> dict[int, AuditEntry]:
    """For each excluded ranking, the latest audit entry that excluded it."""
    if not rankings:
        return {}
    condition = Q()
    for ranking in rankings:
        condition |= Q(target__startswith=f"ranking {ranking.pk} ")
    found: dict[int, AuditEntry] = {}
    for entry in audit_log(project, actions=["ranking.exclude"]).filter(condition):
        pk = int(entry.target.split()[1])
        found.setdefault(pk, entry)  # newest first
    return found


def rankers_of(project: Project, *, fresh: bool = False) -> list[str]:
    """Usernames of everyone who ranked a set of the project, for the filter form (kept like
    `explorer_choices`, for CHOICES_CACHE_SECONDS unless `fresh`)."""
    key = choices_cache_key("rankers", project)
    names = None if fresh else cache.get(key)
    if names is None:
        ranked = (
            Ranking.objects.filter(ranking_set__project=project, annotator__isnull=False)
            .order_by()
            .values_list("annotator__username", flat=True)
            .distinct()
        )
        names = sorted(set(ranked))
        cache.set(key, names, CHOICES_CACHE_SECONDS)
    return names
