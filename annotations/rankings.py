"""Rankings of sets: storing one, and finishing a set (consensus and agreement) at its N-th."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotations.agreement import consensus_order, kendall_tau, pairwise_agreement
from annotations.models import Message, Ranking, RankingCandidate, RankingSet

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
