"""Excluding a trainer's rankings from a date on, lifting that, and reopening a ranking set: the
annotations services (the tasks that collect the extra rankings are tested in tests/labelling)."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotations.access import AccessDenied
from annotations.agreement import pairwise_agreement
from annotations.audit import audit_log
from annotations.curation import ranking_exclude, ranking_include
from annotations.exclusions import (
    annotator_exclude,
    annotator_exclusion_lift,
    ranking_set_reopen,
    standing_exclusions,
)
from annotations.models import AnnotatorExclusion, Ranking, RankingSet
from annotations.rankings import ranking_create
from annotations.selectors import exclusion_standing
from tests.factories import make_ranking_set, ranked_set, say, start, trainers

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def three_way_set(project, raters, text="Which is best?"):
    """A complete set of three candidates: raters[0] and raters[1] say 0 > 1 > 2, raters[2]
    says the reverse. Consensus 0 > 1 > 2; agreement (1 + 0 + 0) / 3."""
    context = start(project, text)
    replies = [say(context, f"reply {i}") for i in range(3)]
    return ranked_set(
        project,
        context,
        replies,
        [(raters[0], [[0], [1], [2]]), (raters[1], [[0], [1], [2]]), (raters[2], [[2], [1], [0]])],
    )


def test_excluding_recomputes_and_reopens_the_sets_the_trainer_touched(project, lead):
    a, b, c = trainers(project, 3)
    the_set = three_way_set(project, [a, b, c])
    assert the_set.agreement == pytest.approx(1 / 3)
    assert the_set.state == RankingSet.State.COMPLETE

    outcome = annotator_exclude(
        project=project, annotator=a, since=timezone.now() - DAY, actor=lead, reason="Rushed"
    )

    assert outcome.rankings_excluded == 1
    assert outcome.sets_reopened == [the_set.pk] and outcome.sets_refinalized == [the_set.pk]
    excluded = Ranking.objects.get(ranking_set=the_set, annotator=a)
    assert excluded.is_excluded
    the_set.refresh_from_db()
    # b (0 > 1 > 2) and c (2 > 1 > 0) are left: they agree on no pair; the consensus ties the
    # pairs they split, leaving every candidate in one group.
    assert the_set.agreement == 0.0
    assert the_set.consensus == [sorted(the_set.ids)]
    # Back to collecting, needing one more ranking than it has (3 stored, 1 excluded).
    assert the_set.state == RankingSet.State.COLLECTING
    assert the_set.rankings_needed == 4 and the_set.rankings_count == 3
    assert the_set.completed_at is None
    exclusion = AnnotatorExclusion.objects.get(project=project, annotator=a)
    assert exclusion.created_by == lead and exclusion.reason == "Rushed"
    assert list(standing_exclusions(project)) == [exclusion]
    entry = audit_log(project, actions=["annotator.exclude"]).get()
    assert entry.actor == lead and entry.target == f"trainer {a.username}"
    assert entry.reason == "Rushed"
    assert entry.after["rankings_excluded"] == 1 and entry.after["sets_reopened"] == 1


def test_rankings_before_the_date_keep_counting(project, lead):
    a, b, c = trainers(project, 3)
    old = three_way_set(project, [a, b, c], "old")
    Ranking.objects.filter(ranking_set=old).update(created_at=timezone.now() - 10 * DAY)
    new = three_way_set(project, [a, b, c], "new")

    outcome = annotator_exclude(
        project=project, annotator=a, since=timezone.now() - DAY, actor=lead, reason="x"
    )

    assert outcome.sets_reopened == [new.pk]
    assert not Ranking.objects.get(ranking_set=old, annotator=a).is_excluded
    old.refresh_from_db()
    assert old.state == RankingSet.State.COMPLETE and old.rankings_needed == 3


def test_a_collecting_set_collects_one_more(project, lead):
    a, b = trainers(project, 2)
    the_set = make_ranking_set(project, k=3, needed=3)
    ids = [e.message_id for e in the_set.entries.order_by("position")]
    for user in (a, b):
        ranking_create(
            ranking_set=the_set,
            annotator=user,
            order=[[i] for i in ids],
            flags={},
            all_bad=False,
            rewrite=None,
            time_spent_ms=None,
        )
    annotator_exclude(
        project=project, annotator=a, since=timezone.now() - DAY, actor=lead, reason="x"
    )
    the_set.refresh_from_db()
    assert the_set.state == RankingSet.State.COLLECTING
    assert (the_set.rankings_count, the_set.rankings_needed) == (2, 4)
    assert the_set.consensus is None  # never finalized: it is still short


def test_a_ranking_stored_while_the_exclusion_stands_is_excluded_at_once(project, lead):
    a, b = trainers(project, 2)
    annotator_exclude(
        project=project, annotator=a, since=timezone.now() - DAY, actor=lead, reason="x"
    )
    assert exclusion_standing(project_id=project.pk, annotator_id=a.pk)
    assert not exclusion_standing(project_id=project.pk, annotator_id=b.pk)
    assert not exclusion_standing(project_id=project.pk, annotator_id=None)
    the_set = make_ranking_set(project, k=2, needed=3)
    ids = [e.message_id for e in the_set.entries.order_by("position")]
    stored = {
        user: ranking_create(
            ranking_set=the_set,
            annotator=user,
            order=[[i] for i in ids],
            flags={},
            all_bad=False,
            rewrite=None,
            time_spent_ms=None,
        )
        for user in (a, b)
    }
    assert stored[a].is_excluded and not stored[b].is_excluded


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reason": "  "}, "reason"),
        ({"since": timezone.now() + 2 * DAY}, "since"),
    ],
)
def test_exclusion_input_is_checked(project, lead, change, field):
    (a,) = trainers(project, 1)
    arguments = {"since": timezone.now() - DAY, "reason": "x", **change}
    with pytest.raises(ValidationError) as raised:
        annotator_exclude(project=project, annotator=a, actor=lead, **arguments)
    assert field in raised.value.message_dict
    assert not AnnotatorExclusion.objects.exists()


def test_an_outsider_cannot_be_excluded_nor_anyone_twice(project, lead, outsider):
    with pytest.raises(ValidationError) as raised:
        annotator_exclude(
            project=project, annotator=outsider, since=timezone.now(), actor=lead, reason="x"
        )
    assert "annotator" in raised.value.message_dict
    (a,) = trainers(project, 1)
    since = timezone.now() - DAY
    annotator_exclude(project=project, annotator=a, since=since, actor=lead, reason="x")
    with pytest.raises(ValidationError) as raised:
        annotator_exclude(
            project=project, annotator=a, since=since + DAY / 2, actor=lead, reason="y"
        )
    assert "already excluded" in raised.value.message_dict["since"][0]
    # An earlier date widens the exclusion.
    annotator_exclude(project=project, annotator=a, since=since - DAY, actor=lead, reason="z")
    assert AnnotatorExclusion.objects.filter(annotator=a).count() == 2


def test_only_a_lead_excludes_or_reopens(project, trainer, engineer):
    (a,) = trainers(project, 1)
    the_set = make_ranking_set(project, k=2)
    for actor in (trainer, engineer):
        with pytest.raises(AccessDenied):
            annotator_exclude(
                project=project, annotator=a, since=timezone.now(), actor=actor, reason="x"
            )
        with pytest.raises(AccessDenied):
            ranking_set_reopen(ranking_set=the_set, actor=actor, reason="x")
    assert not AnnotatorExclusion.objects.exists()
    assert not audit_log(project).exists()


def test_reopening_a_complete_set_asks_for_more_and_is_logged(project, lead):
    the_set = three_way_set(project, trainers(project, 3))
    reopened = ranking_set_reopen(ranking_set=the_set, actor=lead, reason="Close call", extra=2)
    assert reopened.state == RankingSet.State.COLLECTING
    assert reopened.rankings_needed == 5 and reopened.completed_at is None
    assert reopened.agreement == pytest.approx(1 / 3)  # kept until it completes again
    entry = audit_log(project, actions=["ranking_set."]).get()
    assert entry.action == "ranking_set.reopen" and entry.target == f"ranking set {the_set.pk}"
    assert entry.before == {"state": "complete", "rankings_needed": 3}
    assert entry.after == {"state": "collecting", "rankings_needed": 5}
    assert entry.reason == "Close call" and entry.actor == lead


@pytest.mark.parametrize(
    ("state", "extra", "field"),
    [
        (RankingSet.State.CANCELLED, 1, "ranking_set"),
        (RankingSet.State.SAMPLING, 1, "ranking_set"),
        (RankingSet.State.COMPLETE, 0, "extra"),
        (RankingSet.State.COMPLETE, 11, "extra"),
    ],
)
def test_reopening_refuses_what_it_cannot_do(project, lead, state, extra, field):
    the_set = make_ranking_set(project, k=2, state=state)
    with pytest.raises(ValidationError) as raised:
        ranking_set_reopen(ranking_set=the_set, actor=lead, reason="x", extra=extra)
    assert field in raised.value.message_dict
    the_set.refresh_from_db()
    assert the_set.state == state and the_set.rankings_needed == project.rankings_per_set
    assert not audit_log(project).exists()


# ---------------------------------------------------------------------------- lifting


def store(the_set, user, reverse=False):
    ids = [e.message_id for e in the_set.entries.order_by("position")]
    return ranking_create(
        ranking_set=RankingSet.objects.get(pk=the_set.pk),
        annotator=user,
        order=[[i] for i in (ids[::-1] if reverse else ids)],
        flags={},
        all_bad=False,
        rewrite=None,
        time_spent_ms=None,
    )


def test_lifting_counts_again_what_the_exclusion_took_out_and_nothing_else(project, lead):
    a, b, c, d = trainers(project, 4)
    first = three_way_set(project, [a, b, c], "first")
    by_hand = three_way_set(project, [a, b, c], "second")
    hand_ranking = Ranking.objects.get(ranking_set=by_hand, annotator=a)
    ranking_exclude(project=project, ranking=hand_ranking, actor=lead, reason="Copied")
    exclusion = annotator_exclude(
        project=project, annotator=a, since=timezone.now() - DAY, actor=lead, reason="Rushed"
    ).exclusion
    assert not exclusion_standing(project_id=project.pk, annotator_id=b.pk)
    # The reopened set gets its extra ranking from d and completes without a.
    store(first, d)
    first.refresh_from_db()
    assert first.state == RankingSet.State.COMPLETE and first.rankings_needed == 4
    without_a = first.agreement
    completed_at = first.completed_at

    outcome = annotator_exclusion_lift(exclusion=exclusion, actor=lead, reason="Appeal upheld")

    assert outcome.rankings_included == 1 and outcome.sets_refinalized == [first.pk]
    assert not Ranking.objects.get(ranking_set=first, annotator=a).is_excluded
    # The ranking excluded by hand before the exclusion stays out.
    hand_ranking.refresh_from_db()
    assert hand_ranking.is_excluded and hand_ranking.excluded_by is None
    first.refresh_from_db()
    orders = [r.order for r in Ranking.objects.filter(ranking_set=first).order_by("pk")]
    assert len(orders) == 4
    assert first.agreement == pytest.approx(pairwise_agreement(orders))
    assert first.agreement != pytest.approx(without_a)
    # The set keeps its state, its raised count and its completion time.
    assert first.state == RankingSet.State.COMPLETE and first.completed_at == completed_at
    assert first.rankings_needed == 4
    exclusion.refresh_from_db()
    assert exclusion.lifted_at is not None
    assert not standing_exclusions(project).exists()
    assert not exclusion_standing(project_id=project.pk, annotator_id=a.pk)
    entry = audit_log(project, actions=["annotator.lift"]).get()
    assert entry.actor == lead and entry.target == f"trainer {a.username}"
    assert entry.reason == "Appeal upheld"
    assert entry.after["rankings_included"] == 1 and entry.after["sets_refinalized"] == 1


def test_a_ranking_stored_while_excluded_counts_after_the_lift_and_later_ones_too(project, lead):
    a, b = trainers(project, 2)
    exclusion = annotator_exclude(
        project=project, annotator=a, since=timezone.now() - DAY, actor=lead, reason="x"
    ).exclusion
    the_set = make_ranking_set(project, k=2, needed=3)
    stored = store(the_set, a)
    assert stored.is_excluded and stored.excluded_by == exclusion

    outcome = annotator_exclusion_lift(exclusion=exclusion, actor=lead, reason="y")

    assert outcome.rankings_included == 1
    assert outcome.sets_refinalized == []  # still collecting: nothing to recompute
    stored.refresh_from_db()
    assert not stored.is_excluded and stored.excluded_by is None
    assert not store(make_ranking_set(project, k=2, needed=3), a).is_excluded


def test_a_ranking_taken_in_and_out_again_by_hand_stays_out_after_the_lift(project, lead):
    a, b, c = trainers(project, 3)
    the_set = three_way_set(project, [a, b, c])
    exclusion = annotator_exclude(
        project=project, annotator=a, since=timezone.now() - DAY, actor=lead, reason="x"
    ).exclusion
    ranking = Ranking.objects.get(ranking_set=the_set, annotator=a)
    ranking_include(project=project, ranking=ranking, actor=lead, reason="fine after all")
    ranking_exclude(project=project, ranking=ranking, actor=lead, reason="no, copied")

    assert (
        annotator_exclusion_lift(exclusion=exclusion, actor=lead, reason="y").rankings_included == 0
    )

    ranking.refresh_from_db()
    assert ranking.is_excluded and ranking.excluded_by is None


def test_what_another_standing_exclusion_covers_stays_out(project, lead):
    a, b, c = trainers(project, 3)
    old = three_way_set(project, [a, b, c], "old")
    Ranking.objects.filter(ranking_set=old).update(created_at=timezone.now() - 10 * DAY)
    new = three_way_set(project, [a, b, c], "new")
    recent = annotator_exclude(
        project=project, annotator=a, since=timezone.now() - DAY, actor=lead, reason="x"
    ).exclusion
    wider = annotator_exclude(
        project=project, annotator=a, since=timezone.now() - 20 * DAY, actor=lead, reason="y"
    ).exclusion
    new_ranking = Ranking.objects.get(ranking_set=new, annotator=a)
    old_ranking = Ranking.objects.get(ranking_set=old, annotator=a)
    assert (new_ranking.excluded_by, old_ranking.excluded_by) == (recent, wider)

    outcome = annotator_exclusion_lift(exclusion=recent, actor=lead, reason="z")

    assert outcome.rankings_included == 0
    new_ranking.refresh_from_db()
    assert new_ranking.is_excluded and new_ranking.excluded_by == wider
    assert exclusion_standing(project_id=project.pk, annotator_id=a.pk)
    assert annotator_exclusion_lift(exclusion=wider, actor=lead, reason="z").rankings_included == 2
    assert not Ranking.objects.filter(annotator=a, is_excluded=True).exists()


def test_lifting_is_for_leads_once_and_with_a_reason(project, lead, trainer, engineer):
    (a,) = trainers(project, 1)
    exclusion = annotator_exclude(
        project=project, annotator=a, since=timezone.now(), actor=lead, reason="x"
    ).exclusion
    for actor in (trainer, engineer):
        with pytest.raises(AccessDenied):
            annotator_exclusion_lift(exclusion=exclusion, actor=actor, reason="x")
    with pytest.raises(ValidationError) as raised:
        annotator_exclusion_lift(exclusion=exclusion, actor=lead, reason=" ")
    assert "reason" in raised.value.message_dict
    annotator_exclusion_lift(exclusion=exclusion, actor=lead, reason="ok")
    with pytest.raises(ValidationError) as raised:
        annotator_exclusion_lift(exclusion=exclusion, actor=lead, reason="again")
    assert "already lifted" in raised.value.message_dict["exclusion"][0]
    assert audit_log(project, actions=["annotator.lift"]).count() == 1
