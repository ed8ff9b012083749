"""Ranking through the REST API: claim, read, submit (400 / 409 that say why), submit twice."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotations.models import Message, Ranking
from labelling.models import Task
from labelling.services import task_leases_expire
from tests.factories import MembershipFactory, UserFactory, candidate_ids, make_ranking_set

pytestmark = pytest.mark.django_db


def next_task(client, slug: str = "alpha"):
    return client.post(f"/api/v1/projects/{slug}/tasks/next", {"kind": "ranking"}, format="json")


def submit(client, task_id: int, body: dict):
    return client.post(f"/api/v1/tasks/{task_id}/submit", body, format="json")


def test_claim_read_and_submit_a_ranking(api_client_for, project, trainer):
    ranking_set = make_ranking_set(project, turns=3)
    a, b, c, d = candidate_ids(ranking_set)
    client = api_client_for(trainer)

    response = next_task(client)
    assert response.status_code == 200
    task = response.json()
    assert task["kind"] == "ranking" and task["state"] == "assigned"
    assert task["ranking_set"] == ranking_set.pk
    assert [m["role"] for m in task["context"]] == ["user", "assistant", "user"]
    assert sorted(c["id"] for c in task["candidates"]) == [a, b, c, d]
    assert "harmful" in [label["name"] for label in task["labels"]]
    assert client.get(f"/api/v1/tasks/{task['id']}/").json()["candidates"] == task["candidates"]

    body = {
        "order": [[b], [a, c], [d]],
        "flags": {str(d): ["harmful"]},
        "all_bad": False,
        "rewrite": {"content": "Here is a better answer."},
        "time_spent_ms": 12000,
    }
    response = submit(client, task["id"], body)
    assert response.status_code == 200, response.json()
    done = response.json()
    ranking = Ranking.objects.get()
    assert done["state"] == "done"
    assert done["result"] == {"ranking": ranking.pk, "rewrite": ranking.rewrite_id}
    assert ranking.order == [[b], [a, c], [d]] and ranking.flags == {str(d): ["harmful"]}
    assert ranking.rewrite.parent_id == ranking_set.context_id
    assert ranking.time_spent_ms == 12000


def test_no_content_when_nothing_is_left(api_client_for, project, trainer):
    assert next_task(api_client_for(trainer)).status_code == 204


def test_only_members_who_annotate_may_claim(api_client_for, project, engineer, outsider):
    make_ranking_set(project)
    assert next_task(api_client_for(engineer)).status_code == 403
    assert next_task(api_client_for(outsider)).status_code == 404


def test_submitting_twice_stores_one_ranking(api_client_for, project, trainer):
    ranking_set = make_ranking_set(project)
    client = api_client_for(trainer)
    task_id = next_task(client).json()["id"]
    body = {"order": [[i] for i in candidate_ids(ranking_set)], "rewrite": {"content": "Better."}}
    first = submit(client, task_id, body)
    second = submit(client, task_id, body)
    assert first.status_code == second.status_code == 200
    assert first.json()["result"] == second.json()["result"]
    assert Ranking.objects.count() == 1
    assert Message.objects.filter(author_user=trainer).count() == 1


def test_an_order_that_is_not_a_permutation_is_a_400_naming_the_ids(
    api_client_for, project, trainer
):
    ranking_set = make_ranking_set(project)
    a, b, c, d = candidate_ids(ranking_set)
    client = api_client_for(trainer)
    task_id = next_task(client).json()["id"]

    response = submit(client, task_id, {"order": [[a], [b, b], [424242]]})
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == ["order"]
    message = errors["order"][0]
    assert f"missing {c}, {d}" in message
    assert "424242" in message and f"repeated {b}" in message
    assert Ranking.objects.count() == 0
    assert Task.objects.get(pk=task_id).state == "assigned"


def test_an_unknown_flag_is_a_400_naming_it(api_client_for, project, trainer):
    ranking_set = make_ranking_set(project)
    ids = candidate_ids(ranking_set)
    client = api_client_for(trainer)
    task_id = next_task(client).json()["id"]
    response = submit(
        client, task_id, {"order": [ids], "flags": {str(ids[0]): ["harmful", "boring"]}}
    )
    assert response.status_code == 400
    assert list(response.json()) == ["flags"]
    assert "'boring'" in response.json()["flags"][0]
    assert "harmful" in response.json()["flags"][0]  # the allowed ones are listed
    assert Ranking.objects.count() == 0


def test_a_body_that_is_not_an_object_is_a_400(api_client_for, project, trainer):
    make_ranking_set(project)
    client = api_client_for(trainer)
    task_id = next_task(client).json()["id"]
    response = client.post(f"/api/v1/tasks/{task_id}/submit", [1, 2], format="json")
    assert response.status_code == 400


def test_a_task_the_caller_does_not_hold_is_a_409(api_client_for, project, trainer):
    holder = MembershipFactory(project=project, user=UserFactory(username="hal")).user
    ranking_set = make_ranking_set(project)
    body = {"order": [[i] for i in candidate_ids(ranking_set)]}
    task_id = next_task(api_client_for(holder)).json()["id"]

    response = submit(api_client_for(trainer), task_id, body)
    assert response.status_code == 409
    assert response.json()["code"] == "task_not_held"
    assert "do not hold" in response.json()["detail"]

    # The holder's lease runs out and another trainer takes the slot: now the holder gets a 409.
    Task.objects.filter(pk=task_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    task_leases_expire()
    assert next_task(api_client_for(trainer)).json()["id"] == task_id
    response = submit(api_client_for(holder), task_id, body)
    assert response.status_code == 409 and response.json()["code"] == "task_not_held"
    assert submit(api_client_for(trainer), task_id, body).status_code == 200
    assert Ranking.objects.get().annotator == trainer


def test_an_outsider_cannot_see_or_submit_a_task(api_client_for, project, trainer, outsider):
    make_ranking_set(project)
    task_id = next_task(api_client_for(trainer)).json()["id"]
    client = api_client_for(outsider)
    assert client.get(f"/api/v1/tasks/{task_id}/").status_code == 404
    assert submit(client, task_id, {"order": []}).status_code == 404


def test_skip_through_the_api_offers_another_set(api_client_for, project, trainer):
    first = make_ranking_set(project)
    second = make_ranking_set(project)
    client = api_client_for(trainer)
    task = next_task(client).json()
    assert task["ranking_set"] == first.pk
    response = client.post(f"/api/v1/tasks/{task['id']}/skip", {"reason": "unsure"}, format="json")
    assert response.status_code == 200 and response.json()["state"] == "open"
    assert next_task(client).json()["ranking_set"] == second.pk
