"""Ranking sets and their rankings: creating sets with their candidates, cancelling them,
storing one trainer's ranking, and finishing a set with a consensus order and agreement once
enough rankings are in."""

from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotations.agreement import consensus_order, kendall_tau, pairwise_agreement
from annotations.models import Message, Project, Ranking, RankingCandidate, RankingSet
from annotations.selectors import thread_to

State = RankingSet.State


@transaction.atomic
def ranking_set_finalize(*, ranking_set: RankingSet) -> RankingSet:
    """Complete the set when `rankings_count` reaches `rankings_needed`; returns it fresh.

    Consensus, agreement and Kendall tau come from the set's rankings that a lead has not
    excluded. A set still sampling, cancelled, or short of rankings is returned unchanged.
    Calling it again on a complete set recomputes the figures from the same rankings (so the
    result is the same), keeping `completed_at`; after a lead excludes a ranking, calling it
    refreshes them.
    """
    locked = RankingSet.objects.select_for_update().get(pk=ranking_set.pk)
    if locked.state in (State.SAMPLING, State.CANCELLED):
        return locked
    if locked.state != State.COMPLETE and locked.rankings_count < locked.rankings_needed:
        return locked
    candidates = list(
        RankingCandidate.objects.filter(ranking_set=locked)
        .order_by("position")
        .values_list("message_id", flat=True)
    )
    orders = list(
        locked.rankings.filter(is_excluded=False)
        .order_by("created_at", "id")
        .values_list("order", flat=True)
    )
    locked.consensus = consensus_order(orders, candidates)
    locked.agreement = pairwise_agreement(orders)
    locked.kendall_tau = kendall_tau(orders)
    fields = ["consensus", "agreement", "kendall_tau"]
    if locked.state != State.COMPLETE:
        locked.state = State.COMPLETE
        locked.completed_at = timezone.now()
        fields += ["state", "completed_at"]
    locked.save(update_fields=fields)
    return locked


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
    `ranking_set.rankings_count` is the new count when this returns.
    """
    ranking = Ranking.objects.create(
        ranking_set=ranking_set,
        annotator=annotator,
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
