"""A lead's corrections to collected rankings: excluding a trainer's rankings from a date on,
lifting such an exclusion, and reopening a ranking set for more rankings.

Both keep one count true: a set's `rankings_needed` minus its excluded rankings is how many
rankings that count it still aims for. Excluding a ranking therefore raises `rankings_needed` by
one and sends a complete set back to collecting; reopening raises it by the extra rankings asked
for. `rankings_count` keeps counting every stored ranking, excluded or not, because the ranking
service compares it with `rankings_needed` to know when a set is done.

Lifting an exclusion counts again the rankings it excluded (each names it in
`Ranking.excluded_by`; rankings a lead excluded one by one name none and stay out) and leaves
the sets as they are: a set reopened for one more ranking still collects it, which does no harm.

These services change annotations' tables only; the ranking tasks that let trainers give the
extra rankings are labelling's, which calls these inside its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, QuerySet
from django.utils import timezone

from annotations.access import require
from annotations.audit import audit_reason, audit_record
from annotations.models import AnnotatorExclusion, Membership, Project, Ranking, RankingSet
from annotations.rankings import ranking_sets_refinalize

State = RankingSet.State
REOPENABLE = (State.COLLECTING, State.COMPLETE)
MAX_EXTRA_RANKINGS = 10
SET_TARGET = "ranking set "  # an audit entry's target: SET_TARGET + the set's id


@dataclass(frozen=True)
class ExclusionOutcome:
    """What one exclusion changed."""

    exclusion: AnnotatorExclusion
    rankings_excluded: int
    # Sets that lost a counting ranking and now collect one more: complete ones went back to
    # collecting (after their figures were recomputed without the excluded rankings).
    sets_reopened: list[int]
    sets_refinalized: list[int]


@dataclass(frozen=True)
class LiftOutcome:
    """What lifting one exclusion changed."""

    exclusion: AnnotatorExclusion
    rankings_included: int
    sets_refinalized: list[int]  # complete sets recomputed with the rankings counting again


def standing_exclusions(project: Project) -> QuerySet[AnnotatorExclusion]:
    """The project's exclusions that have not been lifted, with their trainers, newest first."""
    return AnnotatorExclusion.objects.filter(
        project=project, lifted_at__isnull=True
    ).select_related("annotator", "created_by")


@transaction.atomic
def annotator_exclude(
    *,
    project: Project,
    annotator: AbstractBaseUser,
    since: datetime,
    actor: AbstractBaseUser,
    reason: str,
) -> ExclusionOutcome:
    """Exclude `annotator`'s rankings in `project` made at or after `since`, and later ones.

    Their rankings stop counting in consensus, agreement and exports. Every complete set they
    touched is finalized again from its remaining rankings and then reopened; every set they
    touched collects one more ranking than before, so it still reaches as many counting
    rankings as it aimed for. Logged as "annotator.exclude".
    """
    require(actor, project, "manage")
    reason = audit_reason(reason)
    if since > timezone.now():
        raise ValidationError({"since": "The date is in the future: nothing to exclude yet."})
    # The membership row is locked so that two exclusions of one trainer (a double submit) run
    # one after the other: the second finds the first standing and is refused.
    member = Membership.objects.select_for_update().filter(project=project, user=annotator)
    if not member.exists():
        raise ValidationError({"annotator": f"{annotator} is not a member of {project}."})
    earlier = standing_exclusions(project).filter(annotator=annotator, since__lte=since).first()
    if earlier is not None:
        raise ValidationError(
            {"since": f"{annotator} is already excluded since {earlier.since:%Y-%m-%d %H:%M}."}
        )

    rankings = Ranking.objects.filter(
        ranking_set__project=project,
        annotator=annotator,
        created_at__gte=since,
        is_excluded=False,
    )
    per_set = dict(
        rankings.order_by()
        .values("ranking_set_id")
        .annotate(n=Count("id"))
        .values_list("ranking_set_id", "n")
    )
    # Rows locked in id order, as every other writer of ranking sets takes one at a time.
    touched = list(
        RankingSet.objects.select_for_update()
        .filter(pk__in=list(per_set), state__in=REOPENABLE)
        .order_by("pk")
    )
    exclusion = AnnotatorExclusion.objects.create(
        project=project, annotator=annotator, since=since, reason=reason, created_by=actor
    )
    # Named on each ranking, so that lifting the exclusion counts exactly these again.
    excluded = rankings.update(is_excluded=True, excluded_by=exclusion)
    # In a few statements per 2,000 sets, whatever their number: a trainer's exclusion may
    # touch a tenth of a project's sets.
    refinalized = [rs.pk for rs in touched if rs.state == State.COMPLETE]
    ranking_sets_refinalize(ranking_set_ids=refinalized)
    # One statement per distinct count (a trainer ranks a set once: normally a single one).
    by_count: dict[int, list[int]] = {}
    for ranking_set in touched:
        by_count.setdefault(per_set[ranking_set.pk], []).append(ranking_set.pk)
    for count, ids in by_count.items():
        RankingSet.objects.filter(pk__in=ids).update(
            rankings_needed=F("rankings_needed") + count,
            state=State.COLLECTING,
            completed_at=None,
        )
    reopened = [ranking_set.pk for ranking_set in touched]
    audit_record(
        project=project,
        actor=actor,
        action="annotator.exclude",
        target=f"trainer {annotator.get_username()}",
        after={
            "since": since.isoformat(),
            "rankings_excluded": excluded,
            "sets_reopened": len(reopened),
        },
        reason=reason,
    )
    return ExclusionOutcome(
        exclusion=exclusion,
        rankings_excluded=excluded,
        sets_reopened=reopened,
        sets_refinalized=refinalized,
    )


@transaction.atomic
def ranking_set_reopen(
    *,
    ranking_set: RankingSet,
    actor: AbstractBaseUser,
    reason: str,
    extra: int = 1,
    needed_was: int | None = None,
) -> RankingSet:
    """Ask `extra` more rankings of a collecting or complete set; returns it fresh.

    `needed_was` is the `rankings_needed` the lead saw when confirming: if the set has changed
    since (a second submit of the same confirmation, or another lead's reopening), the request is
    refused rather than raising the count again.

    A complete set goes back to collecting (its consensus and agreement stay as they were until
    the extra rankings are in and it completes again). Logged as "ranking_set.reopen".
    """
    locked = RankingSet.objects.select_for_update().select_related("project").get(pk=ranking_set.pk)
    project = locked.project
    require(actor, project, "manage")
    reason = audit_reason(reason)
    if not isinstance(extra, int) or not 1 <= extra <= MAX_EXTRA_RANKINGS:
        raise ValidationError(
            {"extra": f"Ask for between 1 and {MAX_EXTRA_RANKINGS} more rankings."}
        )
    if locked.state not in REOPENABLE:
        state = locked.state
        raise ValidationError(
            {"ranking_set": f"Only a collecting or complete set reopens; this one is {state}."}
        )
    if needed_was is not None and locked.rankings_needed != needed_was:
        raise ValidationError(
            {
                "ranking_set": (
                    f"Ranking set {locked.pk} changed since you confirmed: it now needs "
                    f"{locked.rankings_needed} rankings, not {needed_was}. Nothing was done; "
                    "review the reopening again if you still want more."
                )
            }
        )
    before = {"state": locked.state, "rankings_needed": locked.rankings_needed}
    locked.rankings_needed += extra
    locked.state = State.COLLECTING
    locked.completed_at = None
    locked.save(update_fields=["rankings_needed", "state", "completed_at"])
    audit_record(
        project=project,
        actor=actor,
        action="ranking_set.reopen",
        target=f"{SET_TARGET}{locked.pk}",
        before=before,
        after={"state": locked.state, "rankings_needed": locked.rankings_needed},
        reason=reason,
    )
    return locked


@transaction.atomic
def annotator_exclusion_lift(
    *, exclusion: AnnotatorExclusion, actor: AbstractBaseUser, reason: str
) -> LiftOutcome:
    """Lift a standing exclusion: the rankings it excluded count again.

    Complete sets among theirs get their consensus, agreement and quality figures computed
    again; sets stay in their state with their `rankings_needed` (a reopened set still collects
    its extra ranking). Rankings that another standing exclusion of the same trainer covers stay
    excluded, under that one. From now on the trainer's rankings count (and, in labelling, they
    may claim ranking tasks again). Logged as "annotator.lift".
    """
    locked = (
        AnnotatorExclusion.objects.select_for_update(of=("self",))
        .select_related("project", "annotator")
        .get(pk=exclusion.pk)
    )
    project = locked.project
    require(actor, project, "manage")
    reason = audit_reason(reason)
    if locked.lifted_at is not None:
        lifted = f"{locked.lifted_at:%Y-%m-%d %H:%M}"
        raise ValidationError({"exclusion": f"This exclusion was already lifted on {lifted}."})
    rankings = Ranking.objects.filter(excluded_by=locked, is_excluded=True)
    other = (
        standing_exclusions(project)
        .filter(annotator_id=locked.annotator_id)
        .exclude(pk=locked.pk)
        .order_by("since", "pk")
        .first()
    )
    if other is not None:
        rankings.filter(created_at__gte=other.since).update(excluded_by=other)
    set_ids = set(rankings.values_list("ranking_set_id", flat=True))
    # Rows locked in id order, as every other writer of ranking sets takes them.
    touched = list(
        RankingSet.objects.select_for_update()
        .filter(pk__in=list(set_ids))
        .order_by("pk")
        .values_list("pk", "state")
    )
    included = rankings.update(is_excluded=False, excluded_by=None)
    refinalized = [pk for pk, state in touched if state == State.COMPLETE]
    ranking_sets_refinalize(ranking_set_ids=refinalized)
    locked.lifted_at = timezone.now()
    locked.save(update_fields=["lifted_at"])
    audit_record(
        project=project,
        actor=actor,
        action="annotator.lift",
        target=f"trainer {locked.annotator.get_username()}",
        after={
            "since": locked.since.isoformat(),
            "rankings_included": included,
            "sets_refinalized": len(refinalized),
        },
        reason=reason,
    )
    return LiftOutcome(exclusion=locked, rankings_included=included, sets_refinalized=refinalized)
