"""The lead's actions page: excluding a trainer's rankings, lifting that, and reopening a set,
each after a confirmation, logged and shown; and the ranking tasks that collect the extra
rankings."""

from datetime import UTC, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotations.audit import audit_log
from annotations.exclusions import annotator_exclude, standing_exclusions
from annotations.models import AnnotatorExclusion, Ranking, RankingSet
from labelling.dashboards.actions import (
    lift_preview,
    set_reopen,
    trainer_exclude,
    trainer_exclusion_lift,
)
from labelling.models import Task
from tests.factories import claim, make_ranking_set, rank, trainers

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def actions_url(project):
    return reverse("dashboard-actions", args=[project.slug])


@pytest.fixture
def ranked(project, django_capture_on_commit_callbacks):
    """A set of 3 candidates ranked by its 3 tasks' trainers a, b, c; d and e have not ranked."""
    people = trainers(project, 5)
    the_set = make_ranking_set(project, k=3, needed=3)
    for user in people[:3]:
        task = claim(project, user)
        assert task.ranking_set_id == the_set.pk
        rank(task, user)
    the_set.refresh_from_db()
    assert the_set.state == RankingSet.State.COMPLETE
    return the_set, people


def test_excluding_opens_a_task_that_only_a_fresh_trainer_gets(
    project, lead, ranked, django_capture_on_commit_callbacks, monkeypatch
):
    the_set, (a, b, c, d, e) = ranked
    rebuilt = []
    monkeypatch.setattr(
        "labelling.dashboards.tasks.dashboards_rebuild.delay",
        lambda *arguments: rebuilt.append(arguments),
    )
    since = timezone.now() - timedelta(days=1)
    with django_capture_on_commit_callbacks(execute=True):
        outcome, opened = trainer_exclude(
            project=project, annotator=a, since=since, actor=lead, reason="Ranked at random"
        )
    assert outcome.sets_reopened == [the_set.pk] and opened == 1
    # The rollups are rebuilt from the exclusion's day once the change commits.
    assert rebuilt == [(project.pk, since.astimezone(UTC).date().isoformat())]
    slot = Task.objects.get(ranking_set=the_set, state=Task.State.OPEN)
    assert slot.priority == 3
    # The excluded trainer and the others who ranked it are never handed the new slot.
    for user in (a, b, c):
        assert claim(project, user) is None
    task = claim(project, d)
    assert task.pk == slot.pk
    rank(task, d)
    the_set.refresh_from_db()
    assert the_set.state == RankingSet.State.COMPLETE and the_set.completed_at is not None
    counting = the_set.rankings.filter(is_excluded=False)
    assert sorted(counting.values_list("annotator__username", flat=True)) == ["t1", "t2", "t3"]
    assert claim(project, e) is None  # nothing more to rank


def test_an_excluded_trainer_gets_no_more_ranking_tasks_and_loses_the_one_held(
    project, lead, monkeypatch
):
    monkeypatch.setattr(
        "labelling.dashboards.tasks.dashboards_rebuild.delay", lambda *arguments: None
    )
    a, b = trainers(project, 2)
    first, second = make_ranking_set(project, k=2), make_ranking_set(project, k=2)
    held = claim(project, a)
    assert held is not None and held.state == Task.State.ASSIGNED
    trainer_exclude(project=project, annotator=a, since=timezone.now(), actor=lead, reason="Spam")
    held.refresh_from_db()
    assert held.state == Task.State.CANCELLED
    # Its set has as many open slots as before the claim; none goes to the excluded trainer.
    for the_set in (first, second):
        assert Task.objects.filter(ranking_set=the_set, state=Task.State.OPEN).count() == 3
    assert claim(project, a) is None
    assert claim(project, b) is not None


def _complete_sets(project, raters, count):
    for _ in range(count):
        the_set = make_ranking_set(project, k=3, needed=3, tasks=0)
        ids = [e.message_id for e in the_set.entries.order_by("position")]
        # The first rater reverses the others' order.
        Ranking.objects.bulk_create(
            Ranking(
                ranking_set=the_set,
                annotator=user,
                order=[[i] for i in (ids[::-1] if user == raters[0] else ids)],
            )
            for user in raters
        )
        RankingSet.objects.filter(pk=the_set.pk).update(
            rankings_count=3, state=RankingSet.State.COMPLETE, completed_at=timezone.now()
        )


def test_an_exclusion_costs_the_same_queries_however_many_sets_it_touches(
    project, lead, monkeypatch
):
    monkeypatch.setattr(
        "labelling.dashboards.tasks.dashboards_rebuild.delay", lambda *arguments: None
    )
    counts = {}
    for size in (2, 12):
        raters = trainers(project, 3, prefix=f"q{size}-")
        _complete_sets(project, raters, size)
        with CaptureQueriesContext(connection) as queries:
            outcome, opened = trainer_exclude(
                project=project,
                annotator=raters[0],
                since=timezone.now() - timedelta(days=1),
                actor=lead,
                reason="x",
            )
        assert len(outcome.sets_refinalized) == size and opened == size
        counts[size] = len(queries)
    assert counts[2] == counts[12]
    # Every touched set was recomputed without the excluded (reversed) ranking: the two left
    # agree on every pair (with it, agreement would be 1/3).
    agreements = RankingSet.objects.filter(project=project).values_list("agreement", flat=True)
    assert set(agreements) == {1.0}


def test_reopening_opens_as_many_tasks_as_extra_rankings(
    project, lead, ranked, monkeypatch, django_capture_on_commit_callbacks
):
    the_set, people = ranked
    rebuilt = []
    monkeypatch.setattr(
        "labelling.dashboards.tasks.dashboards_rebuild.delay",
        lambda *arguments: rebuilt.append(arguments),
    )
    with django_capture_on_commit_callbacks(execute=True):
        outcome = set_reopen(ranking_set=the_set, actor=lead, reason="Close", extra=2)
    # It leaves the complete sets of the day it completed: the rollups are rebuilt from then.
    assert rebuilt == [(project.pk, the_set.completed_at.astimezone(UTC).date().isoformat())]
    assert outcome.tasks_opened == 2
    assert Task.objects.filter(ranking_set=the_set, state=Task.State.OPEN).count() == 2
    # Reopening again while those slots are open adds only the new ones.
    assert set_reopen(ranking_set=the_set, actor=lead, reason="More", extra=1).tasks_opened == 1


# ---------------------------------------------------------------------------- the page


def test_only_leads_open_the_actions_page(client, project, lead, trainer, engineer, outsider):
    url = actions_url(project)
    expected = {lead: 200, engineer: 403, trainer: 403, outsider: 404}
    for user, status in expected.items():
        client.force_login(user)
        assert client.get(url).status_code == status, user.username
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


def exclude_data(user, **extra):
    return {
        "action": "exclude",
        "annotator": user.username,
        "since": (timezone.localdate() - timedelta(days=1)).isoformat(),
        "reason": "Ranks <b>at random</b>",
        **extra,
    }


def test_exclusion_asks_for_confirmation_first(client, project, lead, ranked, monkeypatch):
    the_set, (a, *_) = ranked
    monkeypatch.setattr(
        "labelling.dashboards.tasks.dashboards_rebuild.delay", lambda *arguments: None
    )
    client.force_login(lead)

    review = client.post(actions_url(project), exclude_data(a), **HTMX)
    assert review.status_code == 200
    page = review.content.decode()
    assert "Exclude 1 ranking by t0" in page and "reopen the 1 set they touched" in page
    assert 'name="confirmed" value="yes"' in page
    assert "<html" not in page  # the fragment only
    assert not Ranking.objects.filter(is_excluded=True).exists()
    assert not AnnotatorExclusion.objects.exists()

    done = client.post(actions_url(project), exclude_data(a, confirmed="yes"))
    assert done.status_code == 302
    assert Ranking.objects.get(ranking_set=the_set, annotator=a).is_excluded
    page = client.get(done.url).content.decode()
    assert "Excluded 1 ranking by t0" in page
    # The log shows who, what and why, with the reason escaped.
    assert "annotator.exclude" in page and "trainer t0" in page and "lee" in page
    assert "Ranks &lt;b&gt;at random&lt;/b&gt;" in page and "<b>at random" not in page


def test_reopen_from_the_page_with_htmx(client, project, lead, ranked, monkeypatch):
    the_set, _ = ranked
    monkeypatch.setattr(
        "labelling.dashboards.tasks.dashboards_rebuild.delay", lambda *arguments: None
    )
    client.force_login(lead)
    data = {"action": "reopen", "ranking_set": the_set.pk, "extra": 1, "reason": "Tie"}
    review = client.post(actions_url(project), data, **HTMX)
    assert f"Reopen ranking set {the_set.pk} (complete, 3 rankings) for 1 more" in (
        review.content.decode()
    )
    the_set.refresh_from_db()
    assert the_set.state == RankingSet.State.COMPLETE

    # The confirmation carries the count the lead saw.
    assert '<input type="hidden" name="needed_was" value="3">' in review.content.decode()
    done = client.post(actions_url(project), {**data, "confirmed": "yes", "needed_was": 3}, **HTMX)
    assert done.status_code == 200
    page = done.content.decode()
    assert "now needs 4 rankings; 1 ranking task opened" in page
    set_link = reverse("dashboard-set", args=[project.slug, the_set.pk])
    assert f'href="{set_link}"' in page  # the log links the reopened set
    assert "rankings needed: 3 → 4" in page
    the_set.refresh_from_db()
    assert the_set.state == RankingSet.State.COLLECTING
    assert audit_log(project).get().action == "ranking_set.reopen"


@pytest.mark.parametrize(
    ("change", "field_text"),
    [
        ({"annotator": "nobody"}, "Choose a trainer of this project."),
        ({"since": "not-a-date"}, "Enter a valid date."),
        ({"reason": ""}, "This field is required."),
        ({"since": "2999-01-01"}, "The date is in the future"),
    ],
)
def test_bad_exclusion_input_is_a_form_error(client, project, lead, ranked, change, field_text):
    _, (a, *_) = ranked
    client.force_login(lead)
    response = client.post(actions_url(project), exclude_data(a, confirmed="yes", **change))
    assert response.status_code == 400
    assert field_text in response.content.decode()
    assert not AnnotatorExclusion.objects.exists()


def test_with_htmx_form_errors_come_back_in_the_panel(client, project, lead):
    client.force_login(lead)
    data = {"action": "exclude", "annotator": "nobody", "since": "x", "reason": ""}
    response = client.post(actions_url(project), data, **HTMX)
    # htmx swaps only 2xx answers, so the panel with the errors comes back as one.
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="dashboard-panel"' in page and "<html" not in page
    for text in ("Choose a trainer of this project.", "Enter a valid date.", "required"):
        assert text in page
    assert not AnnotatorExclusion.objects.exists()


def test_bad_reopen_input_is_a_form_error(client, project, lead, other_set):
    client.force_login(lead)
    for data, text in [
        ({"ranking_set": other_set.pk}, f"This project has no ranking set {other_set.pk}."),
        ({"ranking_set": "x"}, "Enter a whole number."),
        ({"extra": 99}, "less than or equal to 10"),
    ]:
        body = {"action": "reopen", "ranking_set": 1, "extra": 1, "reason": "r", **data}
        response = client.post(actions_url(project), {**body, "confirmed": "yes"})
        assert response.status_code == 400, data
        assert text in response.content.decode()
    response = client.post(actions_url(project), {"action": "drop"})
    assert response.status_code == 400
    assert not audit_log(project).exists()


def test_a_cancelled_set_cannot_be_reopened_from_the_page(client, project, lead):
    the_set = make_ranking_set(project, k=2, state=RankingSet.State.CANCELLED)
    client.force_login(lead)
    data = {"action": "reopen", "ranking_set": the_set.pk, "extra": 1, "reason": "r"}
    needed = the_set.rankings_needed
    response = client.post(actions_url(project), {**data, "confirmed": "yes", "needed_was": needed})
    assert response.status_code == 400
    assert "Only a collecting or complete set reopens" in response.content.decode()


def test_a_trainer_cannot_post_an_action(client, project, trainer, ranked):
    the_set, (a, *_) = ranked
    client.force_login(trainer)
    response = client.post(actions_url(project), exclude_data(a, confirmed="yes"))
    assert response.status_code == 403
    assert not AnnotatorExclusion.objects.exists()


# ---------------------------------------------------------------------------- lifting


@pytest.fixture
def excluded(project, lead, ranked, monkeypatch, django_capture_on_commit_callbacks):
    """t0 (a) excluded since yesterday: their ranking of the set is out, the set collects one
    more. Returns the exclusion, the set, the trainers and the rebuilds queued."""
    the_set, people = ranked
    rebuilt = []
    monkeypatch.setattr(
        "labelling.dashboards.tasks.dashboards_rebuild.delay",
        lambda *arguments: rebuilt.append(arguments),
    )
    since = timezone.now() - timedelta(days=1)
    with django_capture_on_commit_callbacks(execute=True):
        outcome, _ = trainer_exclude(
            project=project, annotator=people[0], since=since, actor=lead, reason="x"
        )
    rebuilt.clear()
    return outcome.exclusion, the_set, people, rebuilt


def lift_data(exclusion, **extra):
    return {"action": "lift", "exclusion": exclusion.pk, "reason": "Appeal <i>upheld</i>", **extra}


def test_lifting_lets_the_trainer_rank_again_and_rebuilds_from_its_date(
    project, lead, excluded, django_capture_on_commit_callbacks
):
    exclusion, the_set, (a, b, c, d, e), rebuilt = excluded
    make_ranking_set(project, k=3, needed=1)
    assert claim(project, a) is None
    with django_capture_on_commit_callbacks(execute=True):
        outcome = trainer_exclusion_lift(exclusion=exclusion, actor=lead, reason="Appeal")
    assert outcome.rankings_included == 1
    assert rebuilt == [(project.pk, exclusion.since.astimezone(UTC).date().isoformat())]
    assert not Ranking.objects.get(ranking_set=the_set, annotator=a).is_excluded
    # The reopened set stays as it is, still collecting its extra ranking from a fresh trainer.
    the_set.refresh_from_db()
    assert the_set.state == RankingSet.State.COLLECTING and the_set.rankings_needed == 4
    assert Task.objects.filter(ranking_set=the_set, state=Task.State.OPEN).count() == 1
    task = claim(project, a)
    assert task is not None and task.ranking_set_id != the_set.pk


def test_lifting_from_the_page_asks_for_confirmation_first(client, project, lead, excluded):
    exclusion, the_set, (a, *_), rebuilt = excluded
    client.force_login(lead)
    page = client.get(actions_url(project)).content.decode()
    assert f'<option value="{exclusion.pk}">t0, since' in page

    review = client.post(actions_url(project), lift_data(exclusion), **HTMX)
    assert review.status_code == 200
    page = review.content.decode()
    assert "Lift the exclusion of t0 since" in page and "the 1 ranking it excluded" in page
    assert "Sets reopened for one more ranking stay open" in page
    assert "Yes, lift the exclusion" in page and "<html" not in page
    assert Ranking.objects.get(ranking_set=the_set, annotator=a).is_excluded

    done = client.post(actions_url(project), lift_data(exclusion, confirmed="yes"))
    assert done.status_code == 302
    assert not Ranking.objects.get(ranking_set=the_set, annotator=a).is_excluded
    page = client.get(done.url).content.decode()
    assert "Lifted the exclusion of t0: 1 ranking count again, 0 sets recomputed." in page
    assert "annotator.lift" in page and "rankings included: 1" in page
    assert "Appeal &lt;i&gt;upheld&lt;/i&gt;" in page and "<i>upheld" not in page
    assert "Nobody is excluded." in page


# Session, user, membership; the standing exclusions; the log; the dashboards' state; the
# trainers to choose from. However many trainers are excluded.
ACTIONS_PAGE_QUERIES = 7


def _standing_reads(queries) -> int:
    """How many of the captured queries read the project's standing exclusions."""
    return sum(
        'FROM "annotations_annotatorexclusion"' in q["sql"] and '"lifted_at" IS NULL' in q["sql"]
        for q in queries.captured_queries
    )


def test_the_actions_page_reads_the_standing_exclusions_once(
    client, project, lead, excluded, django_assert_num_queries
):
    exclusion, _, (_, b, *_), _ = excluded
    annotator_exclude(project=project, annotator=b, since=timezone.now(), actor=lead, reason="y")
    client.force_login(lead)
    client.get(actions_url(project))  # the first request of a session may fill caches
    with django_assert_num_queries(ACTIONS_PAGE_QUERIES) as queries:
        response = client.get(actions_url(project))
    assert _standing_reads(queries) == 1
    page = response.content.decode()
    listed = page[page.index('id="exclusions-title"') : page.index('id="lift"')]
    assert listed.count("<tr><td>") == 2 and "t0</a>" in listed and "t1</a>" in listed
    assert f'<option value="{exclusion.pk}">t0, since' in page
    # The review of a lifting reads them once too: its form's choices are the page's list.
    with CaptureQueriesContext(connection) as queries:
        review = client.post(actions_url(project), lift_data(exclusion), **HTMX)
    assert "Lift the exclusion of t0 since" in review.content.decode()
    assert _standing_reads(queries) == 1


def test_the_lift_preview_leaves_out_what_a_wider_exclusion_covers(project, lead, excluded):
    exclusion, the_set, (a, *_), _ = excluded
    assert lift_preview(exclusion=exclusion) == (1, 1)
    annotator_exclude(
        project=project,
        annotator=a,
        since=exclusion.since - timedelta(days=3),
        actor=lead,
        reason="wider",
    )
    assert lift_preview(exclusion=exclusion) == (0, 0)
    # The page hands over the exclusions it already read: the same answer without a read.
    standing = list(standing_exclusions(project))
    with CaptureQueriesContext(connection) as queries:
        assert lift_preview(exclusion=exclusion, standing=standing) == (0, 0)
    assert _standing_reads(queries) == 0


def test_only_leads_lift(client, project, lead, trainer, engineer, outsider, excluded):
    exclusion, *_ = excluded
    expected = {engineer: 403, trainer: 403, outsider: 404}
    for user, status in expected.items():
        client.force_login(user)
        response = client.post(actions_url(project), lift_data(exclusion, confirmed="yes"))
        assert response.status_code == status, user.username
    exclusion.refresh_from_db()
    assert exclusion.lifted_at is None
    client.force_login(lead)
    assert client.post(actions_url(project), lift_data(exclusion)).status_code == 200


def test_bad_lift_input_is_a_form_error(client, project, lead, excluded, other_set):
    exclusion, *_ = excluded
    (stranger,) = trainers(other_set.project, 1, prefix="o")
    elsewhere = AnnotatorExclusion.objects.create(
        project=other_set.project, annotator=stranger, since=timezone.now(), reason="r"
    )
    client.force_login(lead)
    for data, text in [
        ({"exclusion": elsewhere.pk}, f"This project has no exclusion {elsewhere.pk}."),
        ({"exclusion": "x"}, "Enter a whole number."),
        ({"reason": ""}, "This field is required."),
    ]:
        body = {**lift_data(exclusion, confirmed="yes"), **data}
        response = client.post(actions_url(project), body)
        assert response.status_code == 400, data
        assert text in response.content.decode()
    assert not audit_log(project, actions=["annotator.lift"]).exists()
    elsewhere.refresh_from_db()
    assert elsewhere.lifted_at is None
    # Lifted once; a second try names the field.
    assert (
        client.post(actions_url(project), lift_data(exclusion, confirmed="yes")).status_code == 302
    )
    response = client.post(actions_url(project), lift_data(exclusion, confirmed="yes"), **HTMX)
    assert response.status_code == 200  # htmx: the panel with the error
    assert "This exclusion was already lifted on" in response.content.decode()
    assert audit_log(project, actions=["annotator.lift"]).count() == 1


@pytest.fixture
def other_set(db):
    from tests.factories import ProjectFactory

    return make_ranking_set(ProjectFactory(slug="beta"), k=2)
