"""A task is read only by whoever holds it or did it: no trainer reads another's work in
progress or submitted order through the API or the task pages."""

import pytest
from django.http import Http404
from django.urls import reverse

from labelling.claims import task_submit
from labelling.leases import task_for_reader
from labelling.models import Task
from tests.factories import MembershipFactory, UserFactory, candidate_ids, claim, make_ranking_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def ranked(project, trainer):
    """A set of three slots: tina ranked it; the others have not."""
    ranking_set = make_ranking_set(project, needed=3)
    task = claim(project, trainer)
    a, b, c, d = candidate_ids(ranking_set)
    task_submit(task_id=task.pk, user=trainer, data={"order": [[d], [c], [b], [a]]})
    return ranking_set, task


def other(project, name, role="trainer"):
    return MembershipFactory(project=project, user=UserFactory(username=name), role=role).user


def test_the_api_shows_a_submitted_ranking_to_its_trainer_only(
    api_client_for, project, trainer, lead, engineer, ranked
):
    ranking_set, task = ranked
    mine = api_client_for(trainer).get(f"/api/v1/tasks/{task.pk}/")
    assert mine.status_code == 200
    assert mine.json()["result"] != {}
    second = other(project, "sam")
    for user in (second, lead, engineer):
        response = api_client_for(user).get(f"/api/v1/tasks/{task.pk}/")
        assert response.status_code == 404, user.username
        assert "order" not in response.content.decode()
    # The same 404 as an id that does not exist, so ids do not tell what is there.
    missing = api_client_for(second).get("/api/v1/tasks/99999999/")
    assert missing.status_code == 404


def test_open_tasks_and_those_another_trainer_holds_are_not_readable(
    api_client_for, project, trainer, ranked
):
    ranking_set, _ = ranked
    open_task = Task.objects.filter(ranking_set=ranking_set, state=Task.State.OPEN).first()
    second = other(project, "sam")
    assert api_client_for(second).get(f"/api/v1/tasks/{open_task.pk}/").status_code == 404
    held = claim(project, second)
    assert held.pk == open_task.pk
    assert api_client_for(second).get(f"/api/v1/tasks/{held.pk}/").status_code == 200
    assert api_client_for(trainer).get(f"/api/v1/tasks/{held.pk}/").status_code == 404


def test_task_for_reader_is_the_rule(project, trainer, ranked):
    _, task = ranked
    assert task_for_reader(task_id=task.pk, user=trainer) == task
    with pytest.raises(Http404):
        task_for_reader(task_id=task.pk, user=other(project, "sam"))


def test_the_ranking_page_of_another_trainers_task_shows_nothing_of_it(
    client, project, trainer, ranked
):
    ranking_set, task = ranked
    second = other(project, "sam")
    client.force_login(second)
    response = client.get(reverse("rank-task", args=[task.pk]))
    assert response.status_code == 409
    body = response.content.decode()
    for message_id in candidate_ids(ranking_set):
        assert f'data-id="{message_id}"' not in body
    assert "Candidate reply" not in body
    autosave = client.get(reverse("rank-autosave", args=[task.pk]))
    assert autosave.status_code == 409 and "order" not in autosave.content.decode()
