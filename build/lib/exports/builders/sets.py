"""Ranking sets read for export, a chunk at a time, with the choices applied: which sets, which
candidates and which rankings are kept, and the consensus of what is left."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring as encode_string

from django.db import connection
from django.db.models import Count, QuerySet

from annotations.agreement import consensus_order, kendall_tau, pairwise_agreement
from annotations.models import Ranking, RankingCandidate, RankingSet
from exports.builders.common import (
    ExportContext,
    Threads,
    date_filter,
    flagged_messages,
    keyset_chunks,
    read_ahead,
)

Order = list[list[int]]


@dataclass(slots=True)
class Candidate:
    message_id: int
    content: str  # the text as a JSON string literal, quotes included
    length: int  # characters of the text
    author_model_id: int | None
    author_user_id: int | None


@dataclass(slots=True)
class SetRanking:
    annotator_id: int | None
    order: Order
    flags: dict[str, list[str]]
    all_bad: bool
    rewrite_id: int | None
    rewrite_text: str | None
    time_spent_ms: int | None


@dataclass(slots=True)
class ExportSet:
    """A ranking set after the choices: kept candidates, kept rankings, their consensus."""

    id: int
    context_id: int
    conversation_id: int
    state: str
    agreement: float | None
    kendall_tau: float | None
    created_at: object
    completed_at: object
    candidates: list[Candidate]
    rankings: list[SetRanking]
    consensus: Order
    flags: dict[int, list[str]]  # candidate id -> flag names any kept ranking or label gave it

    def orders(self) -> list[Order]:
        return [r.order for r in self.rankings]


SET_FIELDS = (
    "context_id",
    "context__conversation_id",
    "state",
    "consensus",
    "agreement",
    "kendall_tau",
    "created_at",
    "completed_at",
)


def sets_queryset(ctx: ExportContext) -> QuerySet[RankingSet]:
    """The project's sets the choices allow, before candidates and rankings are looked at."""
    choices = ctx.choices
    states = [RankingSet.State.COMPLETE]
    if choices.include_incomplete:
        states.append(RankingSet.State.COLLECTING)
    if choices.include_cancelled:
        states.append(RankingSet.State.CANCELLED)
    sets = RankingSet.objects.filter(project=ctx.project, state__in=states).filter(
        date_filter("created_at", choices)
    )
    if choices.languages:
        sets = sets.filter(context__lang__in=choices.languages)
    if choices.min_agreement is not None:
        sets = sets.filter(agreement__gte=choices.min_agreement)
    if ctx.reported_conversations:
        sets = sets.exclude(context__conversation_id__in=ctx.reported_conversations)
    return sets


def candidate_counts(ctx: ExportContext) -> Iterator[tuple[int, int]]:
    """(candidates, rankings) of every set the choices allow, for the expected row count."""
    return (
        sets_queryset(ctx)
        .annotate(k=Count("entries"))
        .values_list("k", "rankings_count")
        .order_by()
        .iterator(chunk_size=5000)
    )


@dataclass(slots=True)
class _Chunk:
    rows: list[tuple]
    candidates: dict[int, list[Candidate]]
    rankings: dict[int, list[SetRanking]]
    labelled: set[int]
    threads: Threads
    lead_excluded: set[int]  # sets with a ranking a lead excluded


def export_sets(ctx: ExportContext) -> Iterator[tuple[ExportSet, Threads]]:
    """Every kept set in id order, with the threads of its chunk's contexts."""
    excluded = ctx.excluded_messages
    for chunk in read_ahead(lambda: _read_chunks(ctx)):
        for row in chunk.rows:
            set_id = row[0]
            # A set whose context runs through a message a lead excluded is built on it.
            if excluded and any(pk in excluded for pk in chunk.threads.chain(row[1])):
                ctx.count("sets_on_excluded_messages")
                continue
            export_set = _apply_choices(
                ctx,
                row,
                chunk.candidates[set_id],
                chunk.rankings[set_id],
                chunk.labelled,
                set_id in chunk.lead_excluded,
            )
            if export_set is not None:
                yield export_set, chunk.threads


def _read_chunks(ctx: ExportContext) -> Iterator[_Chunk]:
    """What the sets of each chunk need from the database: a few queries a chunk."""
    sets = sets_queryset(ctx)
    read = _candidates_and_rankings_postgresql if connection.vendor == "postgresql" else None
    for chunk in keyset_chunks(sets, SET_FIELDS):
        ids = [row[0] for row in chunk]
        if read is not None:
            candidates, raw_rankings = read(ids)
        else:
            candidates, raw_rankings = _candidates_and_rankings(sets, ids)
        rankings: dict[int, list[SetRanking]] = {pk: [] for pk in ids}
        # Sets with a ranking a lead excluded: their stored consensus and agreement may still
        # count it (the admin action only flips is_excluded), so they are recomputed.
        lead_excluded: set[int] = set()
        for set_id, set_rankings in raw_rankings.items():
            kept = rankings[set_id]
            for annotator_id, order, flags, *rest, is_excluded in set_rankings:
                if is_excluded:
                    lead_excluded.add(set_id)
                    ctx.count("rankings_excluded_by_leads")
                else:
                    ranking = SetRanking(annotator_id, order, flags or {}, *rest)
                    if ranking.rewrite_id in ctx.excluded_messages:
                        # A rewrite a lead excluded leaves with its text; the order stays.
                        ranking.rewrite_id = ranking.rewrite_text = None
                        ctx.count("rewrites_excluded_by_leads")
                    kept.append(ranking)
        labelled = flagged_messages(
            (c.message_id for cs in candidates.values() for c in cs), ctx.choices.exclude_flags
        )
        threads = Threads()
        threads.load(row[1] for row in chunk)
        yield _Chunk(chunk, candidates, rankings, labelled, threads, lead_excluded)


RankingRow = tuple  # (annotator_id, order, flags, all_bad, rewrite_id, rewrite_text, ms, excluded)


def _candidates_and_rankings(
    sets: QuerySet[RankingSet], ids: list[int]
) -> tuple[dict[int, list[Candidate]], dict[int, list[RankingRow]]]:
    """The chunk's candidates and rankings through the ORM: one query each."""
    # The chunk's sets as a subquery (a key range of the same filters) rather than a list
    # of 2,000 ids that every query would send and Django would prepare one by one.
    chunk_sets = sets.filter(pk__gte=ids[0], pk__lte=ids[-1]).values("pk")
    candidates: dict[int, list[Candidate]] = {pk: [] for pk in ids}
    for set_id, *fields in (
        RankingCandidate.objects.filter(ranking_set__in=chunk_sets)
        .order_by("ranking_set_id", "position")
        .values_list(
            "ranking_set_id",
            "message_id",
            "message__text",
            "message__author_model_id",
            "message__author_user_id",
        )
    ):
        message_id, text, model_id, user_id = fields
        candidates[set_id].append(
            Candidate(message_id, encode_string(text), len(text), model_id, user_id)
        )
    rankings: dict[int, list[RankingRow]] = {pk: [] for pk in ids}
    for set_id, *fields in (
        Ranking.objects.filter(ranking_set__in=chunk_sets)
        .order_by("ranking_set_id", "created_at", "id")
        .values_list(
            "ranking_set_id",
            "annotator_id",
            "order",
            "flags",
            "all_bad",
            "rewrite_id",
            "rewrite__text",
            "time_spent_ms",
            "is_excluded",
        )
    ):
        rankings[set_id].append(fields)
    return candidates, rankings


# The two statements of exports in raw SQL. Read through the ORM, turning a chunk's rows into
# Python values (Django's per-row converters, the JSON of every order, escaping every text
# again for the output) cost more than anything else the preferences export does per set
# (benchmarks/export.py). Here PostgreSQL escapes the texts as JSON (its escaping is the same
# as Python's json module's: the same bytes come out) and hands over one row per set of
# rankings, whose JSON one C call decodes. Which sets to read was decided by the ORM
# (`sets_queryset`): these statements only take the chunk's ids.
_CANDIDATES_SQL = """
    SELECT c.ranking_set_id, c.message_id, to_json(m.text)::text, char_length(m.text),
        m.author_model_id, m.author_user_id
    FROM annotations_rankingcandidate c
    JOIN annotations_message m ON m.id = c.message_id
    WHERE c.ranking_set_id = ANY(%s)
    ORDER BY c.ranking_set_id, c.position
"""
_RANKINGS_SQL = """
    SELECT r.ranking_set_id,
        json_agg(json_build_array(r.annotator_id, r."order", r.flags, r.all_bad, r.rewrite_id,
                                  w.text, r.time_spent_ms, r.is_excluded)
                 ORDER BY r.created_at, r.id)::text
    FROM annotations_ranking r
    LEFT JOIN annotations_message w ON w.id = r.rewrite_id
    WHERE r.ranking_set_id = ANY(%s)
    GROUP BY r.ranking_set_id
"""


def _candidates_and_rankings_postgresql(
    ids: list[int],
) -> tuple[dict[int, list[Candidate]], dict[int, list[RankingRow]]]:
    """The chunk's candidates and rankings, one PostgreSQL statement each (see above)."""
    loads = json.loads
    candidates: dict[int, list[Candidate]] = {pk: [] for pk in ids}
    rankings: dict[int, list[RankingRow]] = {pk: [] for pk in ids}
    with connection.cursor() as cursor:
        cursor.execute(_CANDIDATES_SQL, [ids])
        for set_id, *fields in cursor.fetchall():
            candidates[set_id].append(Candidate(*fields))
        cursor.execute(_RANKINGS_SQL, [ids])
        for set_id, set_rankings in cursor.fetchall():
            rankings[set_id] = loads(set_rankings)
    return candidates, rankings


def _apply_choices(
    ctx: ExportContext,
    row: tuple,
    candidates: list[Candidate],
    rankings: list[SetRanking],
    labelled: set[int],
    lead_excluded: bool = False,
) -> ExportSet | None:
    set_id, context_id, conversation_id, state, consensus, agreement, tau, created, completed = row
    choices = ctx.choices
    kept_rankings = [r for r in rankings if r.annotator_id not in ctx.excluded_annotators]
    if len(kept_rankings) < len(rankings):
        ctx.count("rankings_of_excluded_annotators", len(rankings) - len(kept_rankings))
    if not kept_rankings:
        ctx.count("sets_without_rankings")
        return None
    flags: dict[int, list[str]] = {}
    for ranking in kept_rankings:
        if ranking.flags:
            for key, names in ranking.flags.items():
                flags.setdefault(int(key), []).extend(names)
    if flags:
        flags = {pk: sorted(set(names)) for pk, names in flags.items()}
    excluded_flags = set(choices.exclude_flags)
    excluded = ctx.excluded_messages
    filtering = (
        excluded_flags
        or choices.model_versions
        or (excluded and any(c.message_id in excluded for c in candidates))
    )
    kept = [] if filtering else candidates
    for candidate in candidates if kept is not candidates else ():
        if candidate.message_id in excluded:
            ctx.count("candidates_excluded_by_leads")
        elif not ctx.keeps_model(candidate.author_model_id):
            ctx.count("candidates_of_other_models")
        elif candidate.message_id in labelled or excluded_flags & set(
            flags.get(candidate.message_id, ())
        ):
            ctx.count("candidates_flagged")
        else:
            kept.append(candidate)
    if len(kept) < 2:
        ctx.count("sets_with_fewer_than_two_candidates")
        return None
    changed = lead_excluded or len(kept) < len(candidates) or len(kept_rankings) < len(rankings)
    if changed:
        kept_ids = {c.message_id for c in kept}
        for ranking in kept_rankings:
            ranking.order = restrict(ranking.order, kept_ids)
    if changed or not consensus:
        consensus = consensus_order([r.order for r in kept_rankings], [c.message_id for c in kept])
    if changed:
        # The figures describe the rankings and candidates the row holds.
        agreement = pairwise_agreement([r.order for r in kept_rankings])
        tau = kendall_tau([r.order for r in kept_rankings])
    return ExportSet(
        id=set_id,
        context_id=context_id,
        conversation_id=conversation_id,
        state=state,
        agreement=agreement,
        kendall_tau=tau,
        created_at=created,
        completed_at=completed,
        candidates=kept,
        rankings=kept_rankings,
        consensus=consensus,
        flags=flags,
    )


def restrict(order: Order, kept: set[int]) -> Order:
    """The order over `kept` candidates only, empty groups dropped."""
    groups = [[c for c in group if c in kept] for group in order]
    return [group for group in groups if group]
