"""The lead's doors when a POST arrives twice in a row (a double click that gets past the
browser), when a lead of another project knocks, and when the members API gets a body it does
not expect."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from annotations.audit import audit_log
from annotations.models import AnnotatorExclusion, Membership, Message, Ranking, RankingSet
from labelling.models import Task
from tests.factories import (
    MembershipFactory,
    ModelVersionFactory,
    ProjectFactory,
    UserFactory,
    claim,
    make_ranking_set,
    rank,
    ranked_set,
    say,
    start,
    trainers,
)

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def no_rebuilds(monkeypatch):
    monkeypatch.setattr("labelling.dashboards.tasks.dashboards_rebuild.delay", lambda *a: None)


@pytest.fixture
def ranked(project):
    """A complete set ranked by trainers a, b, c; d and e have not ranked it."""
    people = trainers(project, 5)
    the_set = make_ranking_set(project, k=3, needed=3)
    for user in people[:3]:
        rank(claim(project, user), user)
    the_set.refresh_from_db()
    assert the_set.state == RankingSet.State.COMPLETE
    return the_set, people


def actions_url(project):
    return reverse("dashboard-actions", args=[project.slug])


def actions(project, prefix):
    return [e.action for e in audit_log(project) if e.action.startswith(prefix)]


def twice(send):
    return send(), send()


# ---------------------------------------------------------------------------- members


def test_adding_a_member_twice_adds_one_and_names_the_field(client, project, lead):
    UserFactory(username="zoe")
    client.force_login(lead)
    url = reverse("members", args=[project.slug])
    first, second = twice(lambda: client.post(url, {"who": "zoe", "role": "trainer"}))
    assert first.status_code == 302
    assert second.status_code == 400
    assert "zoe is already a member of Alpha." in second.content.decode()
    assert Membership.objects.filter(project=project, user__username="zoe").count() == 1
    assert actions(project, "member.add") == ["member.add"]


def test_changing_a_role_twice_logs_one_change(client, project, lead, trainer):
    member = Membership.objects.get(project=project, user=trainer)
    client.force_login(lead)
    url = reverse("member-role", args=[project.slug, member.pk])
    first, second = twice(lambda: client.post(url, {"role": "engineer"}, **HTMX))
    assert (first.status_code, second.status_code) == (200, 200)
    assert Membership.objects.get(pk=member.pk).role == "engineer"
    assert actions(project, "member.role") == ["member.role"]


def test_removing_a_member_twice_finds_them_gone(client, project, lead, trainer):
    member = Membership.objects.get(project=project, user=trainer)
    client.force_login(lead)
    url = reverse("member-remove", args=[project.slug, member.pk])
    first, second = twice(lambda: client.post(url, **HTMX))
    assert (first.status_code, second.status_code) == (200, 404)
    assert actions(project, "member.remove") == ["member.remove"]


def test_the_members_api_twice(api_client_for, project, lead, trainer):
    UserFactory(username="zoe")
    client = api_client_for(lead)
    url = reverse("api-project-members", kwargs={"slug": project.slug})
    first, second = twice(lambda: client.post(url, {"user": "zoe", "role": "trainer"}, "json"))
    assert first.status_code == 201
    assert second.status_code == 400 and "already a member" in second.json()["user"][0]
    member = Membership.objects.get(project=project, user=trainer)
    detail = reverse("api-project-member", kwargs={"slug": project.slug, "pk": member.pk})
    first, second = twice(lambda: client.patch(detail, {"role": "engineer"}, "json"))
    assert (first.status_code, second.status_code) == (200, 200)
    first, second = twice(lambda: client.delete(detail))
    assert (first.status_code, second.status_code) == (200, 404)
    assert actions(project, "member.") == ["member.remove", "member.role", "member.add"]


# ---------------------------------------------------------------------------- dashboard actions


def test_confirming_an_exclusion_twice_excludes_once(client, project, lead, ranked):
    the_set, (a, *_) = ranked
    client.force_login(lead)
    data = {
        "action": "exclude",
        "annotator": a.username,
        "since": (timezone.localdate() - timedelta(days=1)).isoformat(),
        "reason": "Random",
        "confirmed": "yes",
    }
    first, second = twice(lambda: client.post(actions_url(project), data))
    assert (first.status_code, second.status_code) == (302, 400)
    assert "t0 is already excluded since" in second.content.decode()
    assert AnnotatorExclusion.objects.filter(annotator=a).count() == 1
    the_set.refresh_from_db()
    assert the_set.rankings_needed == 4  # raised for the one excluded ranking, once
    assert Task.objects.filter(ranking_set=the_set, state=Task.State.OPEN).count() == 1
    assert actions(project, "annotator.") == ["annotator.exclude"]


def test_confirming_a_lift_twice_lifts_once(client, project, lead, ranked):
    _, (a, *_) = ranked
    client.force_login(lead)
    since = (timezone.localdate() - timedelta(days=1)).isoformat()
    exclude = {"action": "exclude", "annotator": a.username, "since": since, "reason": "r"}
    assert client.post(actions_url(project), {**exclude, "confirmed": "yes"}).status_code == 302
    exclusion = AnnotatorExclusion.objects.get()
    data = {"action": "lift", "exclusion": exclusion.pk, "reason": "Appeal", "confirmed": "yes"}
    first, second = twice(lambda: client.post(actions_url(project), data))
    assert (first.status_code, second.status_code) == (302, 400)
    assert "This exclusion was already lifted on" in second.content.decode()
    assert actions(project, "annotator.") == ["annotator.lift", "annotator.exclude"]


def test_confirming_a_reopening_twice_asks_for_the_extra_rankings_once(
    client, project, lead, ranked
):
    the_set, _ = ranked
    client.force_login(lead)
    data = {"action": "reopen", "ranking_set": the_set.pk, "extra": 2, "reason": "Tie"}
    review = client.post(actions_url(project), data, **HTMX).content.decode()
    assert '<input type="hidden" name="needed_was" value="3">' in review
    confirmed = {**data, "confirmed": "yes", "needed_was": 3}
    first, second = twice(lambda: client.post(actions_url(project), confirmed))
    assert (first.status_code, second.status_code) == (302, 400)
    assert "changed since you confirmed: it now needs 5 rankings, not 3" in (
        second.content.decode()
    )
    the_set.refresh_from_db()
    assert the_set.rankings_needed == 5
    assert Task.objects.filter(ranking_set=the_set, state=Task.State.OPEN).count() == 2
    assert actions(project, "ranking_set.") == ["ranking_set.reopen"]
    # Asking again knowingly goes through the review again, which carries the new count.
    review = client.post(actions_url(project), data, **HTMX).content.decode()
    assert '<input type="hidden" name="needed_was" value="5">' in review
    again = client.post(actions_url(project), {**confirmed, "needed_was": 5}, **HTMX)
    assert again.status_code == 200 and "now needs 7 rankings" in again.content.decode()


def test_a_confirmed_reopening_without_the_count_seen_is_refused(client, project, lead, ranked):
    the_set, _ = ranked
    client.force_login(lead)
    data = {"action": "reopen", "ranking_set": the_set.pk, "extra": 1, "reason": "Tie"}
    response = client.post(actions_url(project), {**data, "confirmed": "yes"})
    assert response.status_code == 400
    assert "the confirmation was missing" in response.content.decode()
    the_set.refresh_from_db()
    assert the_set.rankings_needed == 3 and the_set.state == RankingSet.State.COMPLETE


# ---------------------------------------------------------------------------- explorer


@pytest.fixture
def curated(project, trainer):
    """A human reply and a complete set ranked by three trainers."""
    model = ModelVersionFactory(name="tiny")
    prompt = start(project, "How do teapots work?", user=trainer)
    human = say(prompt, "They steep leaves.", user=trainer)
    context = start(project, "Which reply is best?")
    replies = [say(context, f"reply {x}", model=model) for x in "abc"]
    r1, r2, r3 = trainers(project, 3, prefix="ranker")
    the_set = ranked_set(
        project,
        context,
        replies,
        [(r1, [[0], [1], [2]]), (r2, [[0], [1], [2]]), (r3, [[2], [1], [0]])],
    )
    return human, Ranking.objects.filter(ranking_set=the_set).first()


def test_excluding_and_including_a_message_twice_logs_each_once(client, project, lead, curated):
    human, _ = curated
    client.force_login(lead)
    url = reverse("explore-message-exclusion", args=[project.slug, human.pk])
    for action in ("exclude", "include"):
        first, second = twice(
            lambda action=action: client.post(url, {"action": action, "reason": "r"}, **HTMX)
        )
        assert (first.status_code, second.status_code) == (200, 200), action
        assert Message.objects.get(pk=human.pk).is_excluded == (action == "exclude")
    assert actions(project, "message.") == ["message.include", "message.exclude"]


def test_excluding_and_including_a_ranking_twice_logs_each_once(client, project, lead, curated):
    _, ranking = curated
    client.force_login(lead)
    url = reverse("explore-ranking-exclusion", args=[project.slug, ranking.pk])
    for action in ("exclude", "include"):
        first, second = twice(
            lambda action=action: client.post(url, {"action": action, "reason": "r"}, **HTMX)
        )
        assert (first.status_code, second.status_code) == (200, 200), action
        assert Ranking.objects.get(pk=ranking.pk).is_excluded == (action == "exclude")
    assert actions(project, "ranking.") == ["ranking.include", "ranking.exclude"]


# ---------------------------------------------------------------------------- a lead of project B


def test_a_lead_of_another_project_is_not_found_on_every_post_door(
    client, api_client_for, project, trainer, ranked, curated
):
    the_set, (a, *_) = ranked
    human, ranking = curated
    member = Membership.objects.get(project=project, user=trainer)
    stranger = UserFactory(username="bob", is_staff=False)
    MembershipFactory(project=ProjectFactory(slug="beta"), user=stranger, role="lead")
    UserFactory(username="zoe")
    slug = project.slug
    since = (timezone.localdate() - timedelta(days=1)).isoformat()
    doors = [
        (reverse("project-settings", args=[slug]), {"name": "Taken"}),
        (reverse("guidelines-preview", args=[slug]), {"guidelines": "x"}),
        (reverse("label-schema", args=[slug]), {}),
        (reverse("sampling-settings", args=[slug]), {}),
        (reverse("members", args=[slug]), {"who": "zoe", "role": "lead"}),
        (reverse("member-role", args=[slug, member.pk]), {"role": "lead"}),
        (reverse("member-remove", args=[slug, member.pk]), {}),
        (
            actions_url(project),
            {"action": "exclude", "annotator": a.username, "since": since, "reason": "r"},
        ),
        (
            actions_url(project),
            {"action": "reopen", "ranking_set": the_set.pk, "extra": 1, "reason": "r"},
        ),
        (actions_url(project), {"action": "lift", "exclusion": 1, "reason": "r"}),
        (reverse("explore-message-exclusion", args=[slug, human.pk]), {"action": "exclude"}),
        (reverse("explore-ranking-exclusion", args=[slug, ranking.pk]), {"action": "exclude"}),
    ]
    client.force_login(stranger)
    for url, data in doors:
        for extra in ({}, {"confirmed": "yes", "needed_was": 3}):
            assert client.post(url, {**data, **extra}).status_code == 404, (url, data)
            assert client.post(url, {**data, **extra}, **HTMX).status_code == 404, (url, data)
    api = api_client_for(stranger)
    members = reverse("api-project-members", kwargs={"slug": slug})
    detail = reverse("api-project-member", kwargs={"slug": slug, "pk": member.pk})
    assert api.post(members, {"user": "zoe", "role": "lead"}, "json").status_code == 404
    assert api.patch(detail, {"role": "lead"}, "json").status_code == 404
    assert api.delete(detail).status_code == 404
    assert not audit_log(project).exists()
    assert Membership.objects.get(pk=member.pk).role == "trainer"
    assert not Membership.objects.filter(project=project, user__username__in=["zoe", "bob"])
    assert not AnnotatorExclusion.objects.exists()
    assert not Message.objects.filter(is_excluded=True).exists()
    assert not Ranking.objects.filter(is_excluded=True).exists()


# ---------------------------------------------------------------------------- bad API bodies


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        ("not json", "application/json", "detail"),
        ("[1, 2]", "application/json", "non_field_errors"),
        ('"zoe"', "application/json", "non_field_errors"),
        ("null", "application/json", "non_field_errors"),
        ('{"user": "zoe"}', "application/json", "role"),
        ('{"role": "trainer"}', "application/json", "user"),
        ('{"user": "zoe", "role": "owner"}', "application/json", "role"),
        ('{"user": "zoe", "role": 3}', "application/json", "role"),
        ('{"user": ["zoe"], "role": "trainer"}', "application/json", "user"),
        ('{"user": {"a": 1}, "role": "trainer"}', "application/json", "user"),
        ('{"user": "nobody", "role": "trainer"}', "application/json", "user"),
        ('{"user": "", "role": "trainer"}', "application/json", "user"),
        ("<xml/>", "application/xml", "detail"),
    ],
)
def test_the_members_api_names_what_is_wrong_in_a_body(
    api_client_for, project, lead, body, content_type, field
):
    UserFactory(username="zoe")
    client = api_client_for(lead)
    url = reverse("api-project-members", kwargs={"slug": project.slug})
    response = client.generic("POST", url, body, content_type=content_type)
    assert response.status_code in (400, 415), response.content
    assert field in response.json(), response.json()
    assert not Membership.objects.filter(user__username="zoe").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not json", "detail"),
        ("[]", "non_field_errors"),
        ("{}", "role"),
        ('{"role": "boss"}', "role"),
        ('{"role": null}', "role"),
        ('{"role": ["lead"]}', "role"),
    ],
)
def test_the_members_api_patch_names_what_is_wrong(
    api_client_for, project, lead, trainer, body, field
):
    member = Membership.objects.get(project=project, user=trainer)
    client = api_client_for(lead)
    url = reverse("api-project-member", kwargs={"slug": project.slug, "pk": member.pk})
    response = client.generic("PATCH", url, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert Membership.objects.get(pk=member.pk).role == "trainer"


# ---------------------------------------------------------------------------- racing twins


def test_a_racing_twin_that_passes_the_checks_gets_a_field_error(monkeypatch, project, lead):
    """Two identical requests at once both pass the "already there?" reads; the unique
    constraint stops the second, which must come back as the field's error, not a 500."""
    from django.db.models.query import QuerySet

    from annotations.memberships import membership_add
    from annotations.projects import project_create

    monkeypatch.setattr(QuerySet, "exists", lambda self: False)  # as if the twin read first
    with pytest.raises(ValidationError) as refused:
        project_create(slug="alpha", name="Alpha again", actor=lead, lead=lead)
    assert "already exists" in refused.value.message_dict["slug"][0]
    with pytest.raises(ValidationError) as refused:
        membership_add(project=project, actor=lead, user=lead, role="trainer")
    assert "already a member" in refused.value.message_dict["user"][0]
    monkeypatch.undo()
    assert Membership.objects.get(project=project, user=lead).role == "lead"
    assert not audit_log(project).exists()
