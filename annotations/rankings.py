"""Finishing ranking sets: consensus order and agreement once enough rankings are in."""

from django.db import transaction
from django.utils import timezone

from annotations.agreement import consensus_order, kendall_tau, pairwise_agreement
from annotations.models import RankingCandidate, RankingSet

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
