"""Ranking sets and their rankings: creating sets with their candidates, cancelling them,
storing one trainer's ranking, and finishing a set with a consensus order and agreement once
enough rankings are in (again, for many sets at once, after a lead excludes rankings)."""

import json
from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from annotations.agreement import consensus_order, kendall_tau, pairwise_agreement
from annotations.models import Message, Project, Ranking, RankingCandidate, RankingSet
from annotations.ranking_quality import (
    rankings_quality_apply,
    rankings_quality_store,
    set_candidates,
    set_rankings,
)
from annotations.selectors import exclusion_covering, thread_to

State = RankingSet.State


@transaction.atomic
def ranking_set_finalize(*, ranking_set: RankingSet) -> RankingSet:
    """Complete the set when `rankings_count` reaches `rankings_needed`; returns it fresh.

    Consensus, agreement and Kendall tau come from the set's rankings that a lead has not
    excluded. Every ranking of the set, excluded ones too, gets its quality figures (agreement
    with the consensus of the counting others, length preference; see
    `annotations.ranking_quality`) in the same transaction, in one statement. A set still
    sampling, cancelled, or short of rankings is returned unchanged.
    Calling it again on a complete set recomputes the figures from the same rankings (so the
    result is the same), keeping `completed_at`; after a lead excludes a ranking, calling it
    refreshes them.
    """
    locked = RankingSet.objects.select_for_update().get(pk=ranking_set.pk)
    if locked.state in (State.SAMPLING, State.CANCELLED):
        return locked
    if locked.state != State.COMPLETE and locked.rankings_count < locked.rankings_needed:
        return locked
    entries = set_candidates([locked.pk]).get(locked.pk, [])
    rankings = set_rankings([locked.pk]).get(locked.pk, [])
    _figures_apply(locked, rankings, entries)
    rankings_quality_store(rankings)
    fields = ["consensus", "agreement", "kendall_tau"]
    if locked.state != State.COMPLETE:
        locked.state = State.COMPLETE
        locked.completed_at = timezone.now()
        fields += ["state", "completed_at"]
    locked.save(update_fields=fields)
    return locked


def _figures_apply(
    ranking_set: RankingSet, rankings: Sequence[Ranking], entries: Sequence[tuple[int, int]]
) -> None:
    """Set a set's consensus, agreement and tau from its counting rankings, and every ranking's
    quality figures, in memory. `entries` are the candidates as (message id, text length)."""
    candidates = [message_id for message_id, _ in entries]
    orders = [ranking.order for ranking in rankings if not ranking.is_excluded]
    ranking_set.consensus = consensus_order(orders, candidates)
    ranking_set.agreement = pairwise_agreement(orders)
    ranking_set.kendall_tau = kendall_tau(orders)
    rankings_quality_apply(rankings, candidates, dict(entries))


@transaction.atomic
def ranking_sets_refinalize(*, ranking_set_ids: Sequence[int], batch: int = 2000) -> int:
    """Recompute consensus, agreement, kendall_tau and every ranking's quality figures of the
    given COMPLETE sets from their non-excluded rankings, a few queries per batch, keeping state
    and completed_at; returns how many sets were written (sets not complete are skipped).

    The same figures as `ranking_set_finalize` gives each set, for the thousands of sets a lead's
    exclusion touches. The caller holds the sets' row locks (or does not need them).
    """
    if batch < 1:
        raise ValueError("batch must be at least 1.")
    ids = list(
        RankingSet.objects.filter(pk__in=list(ranking_set_ids), state=State.COMPLETE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        candidates, rankings = set_candidates(chunk), set_rankings(chunk)
        sets = [RankingSet(pk=pk) for pk in chunk]
        changed: list[Ranking] = []
        for ranking_set in sets:
            ranked = rankings.get(ranking_set.pk, [])
            _figures_apply(ranking_set, ranked, candidates.get(ranking_set.pk, []))
            changed.extend(ranked)
        _set_figures_store(sets)
        rankings_quality_store(changed)
    return len(ids)


def _set_figures_store(sets: Sequence[RankingSet]) -> None:
    """Write the sets' consensus, agreement and tau in one statement (see
    `rankings_quality_store` for why not `bulk_update` on PostgreSQL)."""
    if not sets:
        return
    if connection.vendor != "postgresql":
        RankingSet.objects.bulk_update(sets, ["consensus", "agreement", "kendall_tau"], 500)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            'UPDATE "annotations_rankingset" AS s SET consensus = v.consensus::jsonb,'
            " agreement = v.agreement, kendall_tau = v.tau"
            " FROM unnest(%s::bigint[], %s::text[], %s::double precision[],"
            " %s::double precision[]) AS v(id, consensus, agreement, tau) WHERE s.id = v.id",
            [
                [s.pk for s in sets],
                [json.dumps(s.consensus) for s in sets],
                [s.agreement for s in sets],
                [s.kendall_tau for s in sets],
            ],
        )


@transaction.atomic
def ranking_set_create(
    *,
    project: Project,
    context: Message,
    rankings_needed: int,
    candidates: Sequence[Message] = (),
    replies_wanted: int | None = None,
) -> RankingSet:
    """A ranking set after `context`.

    With `candidates` it collects rankings at once (see `ranking_set_collect`); without, it
    waits in `sampling` until its candidates are given.
    """
    if context.conversation.project_id != project.pk:
        raise ValidationError({"context": "The context belongs to another project."})
    ranking_set = RankingSet.objects.create(
        project=project,
        context=context,
        state=State.SAMPLING,
        rankings_needed=rankings_needed,
        replies_wanted=replies_wanted,
    )
    if candidates:
        ranking_set = ranking_set_collect(ranking_set=ranking_set, candidates=candidates)
    return ranking_set


@transaction.atomic
def ranking_set_collect(*, ranking_set: RankingSet, candidates: Sequence[Message]) -> RankingSet:
    """Give a set waiting in `sampling` its candidates, in the order given, and open it for
    rankings. Whoever wrote the context or a candidate joins the set's authors, who never rank
    it."""
    if ranking_set.state != State.SAMPLING:
        state = ranking_set.state
        raise ValidationError(
            {"state": f"Only a set waiting for candidates takes them; this one is {state}."}
        )
    if not candidates:
        raise ValidationError({"candidates": "A ranking set needs candidates."})
    if any(message.parent_id != ranking_set.context_id for message in candidates):
        raise ValidationError({"candidates": "Every candidate must reply to the set's context."})
    if len({message.pk for message in candidates}) != len(candidates):
        raise ValidationError({"candidates": "A candidate appears twice."})
    RankingCandidate.objects.bulk_create(
        RankingCandidate(ranking_set=ranking_set, message=message, position=position)
        for position, message in enumerate(candidates)
    )
    thread = thread_to(ranking_set.context)
    authors = {m.author_user_id for m in [*thread, *candidates] if m.author_user_id}
    ranking_set.authors.add(*authors)
    ranking_set.state = State.COLLECTING
    ranking_set.save(update_fields=["state"])
    return ranking_set


@transaction.atomic
def ranking_set_resampled(*, ranking_set: RankingSet) -> RankingSet:
    """Count one more round of samples asked for because duplicates left the set short of K."""
    ranking_set.resamples += 1
    ranking_set.save(update_fields=["resamples"])
    return ranking_set


@transaction.atomic
def ranking_set_cancel(*, ranking_set: RankingSet, reason: str) -> RankingSet:
    """Cancel a set that will never collect rankings; `reason` completes "Cancelled because"."""
    ranking_set.state = State.CANCELLED
    ranking_set.cancel_reason = f"Cancelled because {reason}"
    ranking_set.save(update_fields=["state", "cancel_reason"])
    return ranking_set


def ranking_create(
    *,
    ranking_set: RankingSet,
    annotator: AbstractBaseUser,
    order: list[list[int]],
    flags: dict[str, list[str]],
    all_bad: bool,
    rewrite: Message | None,
    time_spent_ms: int | None,
) -> Ranking:
    """Store a trainer's checked ranking of a collecting set, count it, and finalize the set at N.

    The caller holds the set's row lock (`select_for_update`) and has checked that the set is
    collecting and that `annotator` has not ranked it: with the row locked, counting up in Python
    cannot lose a concurrent ranking, and exactly one ranking sees the count reach N.
    `ranking_set.rankings_count` is the new count when this returns. A ranking stored while a
    lead's exclusion of `annotator` stands in the project is stored excluded.
    """
    # A ranking by a trainer whom a lead's standing exclusion covers never counts (until the
    # exclusion is lifted).
    covering = exclusion_covering(project_id=ranking_set.project_id, annotator_id=annotator.pk)
    ranking = Ranking.objects.create(
        ranking_set=ranking_set,
        annotator=annotator,
        is_excluded=covering is not None,
        excluded_by=covering,
        order=order,
        flags=flags,
        all_bad=all_bad,
        rewrite=rewrite,
        time_spent_ms=time_spent_ms,
    )
    ranking_set.rankings_count += 1
    ranking_set.save(update_fields=["rankings_count"])
    if ranking_set.rankings_count >= ranking_set.rankings_needed:
        ranking_set_finalize(ranking_set=ranking_set)
    return ranking
