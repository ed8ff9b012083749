"""The task admin reaches only the projects a staff lead leads."""

import pytest

from annotations.models import Conversation, Project, RankingSet
from labelling.models import Task, TaskSkip
from tests.conftest import (
    admin_url,
    assert_changelist_scoped,
    assert_no_choices_from_b,
    assert_object_unreachable,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MODELS = [Task, TaskSkip]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_lead_lists_only_their_projects_tasks(lead_client, world, model):
    assert_changelist_scoped(lead_client, model, world)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_lead_cannot_view_change_or_delete_another_projects_task(lead_client, world, model):
    assert_object_unreachable(lead_client, model, world.b[model])


def test_another_projects_autosaved_work_stays_hidden(lead_client, world):
    page = lead_client.get(admin_url(Task, "change", world.a[Task].pk)).content.decode()
    assert "Alpha-Open autosaved work" in page
    assert "Bravo-Secret" not in page


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_task_forms_offer_no_choice_from_another_project(lead_client, world, model):
    for url in [admin_url(model, "add"), admin_url(model, "change", world.a[model].pk)]:
        response = lead_client.get(url)
        assert response.status_code == 200
        assert_no_choices_from_b(response, world)


def test_a_lead_cannot_add_a_task_in_another_project(lead_client, world):
    before = Task.objects.count()
    response = lead_client.post(
        admin_url(Task, "add"),
        {
            "project": world.b[Project].pk,
            "kind": "ranking",
            "state": "open",
            "priority": 0,
            "ranking_set": world.b[RankingSet].pk,
            "autosave": "{}",
            "result": "{}",
        },
    )
    assert response.context["adminform"].form.errors
    assert Task.objects.count() == before


def test_a_lead_cannot_point_their_task_at_another_projects_conversation(lead_client, world):
    task = world.a[Task]
    response = lead_client.post(
        admin_url(Task, "change", task.pk),
        {
            "project": world.a[Project].pk,
            "kind": task.kind,
            "state": task.state,
            "priority": 0,
            "ranking_set": world.a[RankingSet].pk,
            "conversation": world.b[Conversation].pk,
            "autosave": "{}",
            "result": "{}",
        },
    )
    assert response.context["adminform"].form.errors["conversation"]
    task.refresh_from_db()
    assert task.conversation is None


def test_a_lead_cannot_skip_for_someone_outside_their_projects(lead_client, world):
    before = TaskSkip.objects.count()
    response = lead_client.post(
        admin_url(TaskSkip, "add"),
        {"task": world.a[Task].pk, "user": world.b[UserFactory._meta.model].pk},
    )
    assert response.context["adminform"].form.errors["user"]
    assert TaskSkip.objects.count() == before


def test_a_superuser_sees_every_projects_tasks(client, world):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    for model in MODELS:
        page = client.get(admin_url(model, "changelist")).content.decode()
        assert admin_url(model, "change", world.b[model].pk) in page
