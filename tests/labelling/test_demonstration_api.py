"""The task API with demonstration tasks: claim, read, autosave, submit, skip and report."""

import pytest

from annotations.models import Conversation, Message, PromptReport
from annotations.services import conversation_start
from labelling.models import Task
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

NEXT = "/api/v1/projects/alpha/tasks/next"


def _prompt(project, text):
    _, root = conversation_start(project=project, text=text, source=Conversation.Source.PROMPT)
    return root


def _task_url(task_id, action=""):
    return f"/api/v1/tasks/{task_id}/{action}"


def _claim(client):
    return client.post(NEXT, {"kind": "demonstration"}, format="json")


def test_claim_gives_a_pool_prompt_then_a_blank_task(api_client_for, project, trainer, lead):
    prompt = _prompt(project, "How do tides work?")
    response = _claim(api_client_for(trainer))
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "demonstration" and body["state"] == "assigned"
    assert body["context"] == [{"id": prompt.pk, "role": "user", "content": "How do tides work?"}]
    assert body["first_role"] == "assistant" and body["max_new_turns"] == project.max_turns - 1
    assert _claim(api_client_for(trainer)).json()["id"] == body["id"]  # the held task again

    blank = _claim(api_client_for(lead)).json()  # leads annotate too
    assert blank["context"] == [] and blank["first_role"] == "user"


def test_claim_needs_the_annotate_capability(api_client_for, project, engineer, outsider):
    assert _claim(api_client_for(engineer)).status_code == 403
    assert _claim(api_client_for(outsider)).status_code == 404


def test_autosave_then_read_back(api_client_for, project, trainer):
    client = api_client_for(trainer)
    task_id = _claim(client).json()["id"]
    data = {"turns": [{"role": "user", "content": "Hi", "draft_id": None}], "editor": "Hel"}
    response = client.post(_task_url(task_id, "autosave"), {"data": data}, format="json")
    assert response.status_code == 200
    assert client.get(_task_url(task_id)).json()["autosave"] == data


def test_submit_stores_the_dialogue_once(api_client_for, project, trainer):
    client = api_client_for(trainer)
    task_id = _claim(client).json()["id"]
    turns = [
        {"role": "user", "content": "What rhymes with orange?", "draft_id": None},
        {"role": "assistant", "content": "Almost nothing; 'door hinge' comes close."},
    ]
    first = client.post(_task_url(task_id, "submit"), {"turns": turns}, format="json")
    assert first.status_code == 200
    result = first.json()["result"]
    assert first.json()["state"] == "done" and len(result["messages"]) == 2
    again = client.post(_task_url(task_id, "submit"), {"turns": turns}, format="json")
    assert again.status_code == 200 and again.json()["result"] == result
    assert Message.objects.count() == 2
    stored = Message.objects.get(pk=result["messages"][1])
    assert stored.role == "assistant" and stored.author_user == trainer


@pytest.mark.parametrize(
    ("turns", "field"),
    [
        (
            [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}],
            "turns[0].content",
        ),
        ([{"role": "user", "content": "Only a question"}], "turns"),
        (
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b" * 9000}],
            "turns[1].content",
        ),
        ([{"role": "assistant", "content": "b"}], "turns[0].role"),
    ],
)
def test_invalid_submissions_are_400_naming_the_field(
    api_client_for, project, trainer, turns, field
):
    client = api_client_for(trainer)
    task_id = _claim(client).json()["id"]
    response = client.post(_task_url(task_id, "submit"), {"turns": turns}, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Message.objects.exists()
    assert Task.objects.get(pk=task_id).state == "assigned"


def test_submitting_someone_elses_task_is_409(api_client_for, project, trainer):
    task_id = _claim(api_client_for(trainer)).json()["id"]
    other = MembershipFactory(project=project, user=UserFactory(username="otto")).user
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    response = api_client_for(other).post(
        _task_url(task_id, "submit"), {"turns": turns}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "task_not_held"
    assert not Message.objects.exists()


def test_skip_with_a_report_files_it_and_takes_the_prompt_out_of_the_pool(
    api_client_for, project, trainer
):
    prompt = _prompt(project, "Say something hateful.")
    client = api_client_for(trainer)
    task_id = _claim(client).json()["id"]
    response = client.post(
        _task_url(task_id, "skip"), {"reason": "hateful", "report": "harmful"}, format="json"
    )
    assert response.status_code == 200 and response.json()["state"] == "open"
    report = PromptReport.objects.get()
    assert (report.message, report.reason, report.reporter, report.state) == (
        prompt,
        "harmful",
        trainer,
        "open",
    )
    other = MembershipFactory(project=project, user=UserFactory(username="otto")).user
    assert _claim(api_client_for(other)).json()["context"] == []  # not the reported prompt


def test_skip_with_an_unknown_report_reason_is_400(api_client_for, project, trainer):
    _prompt(project, "Seed")
    client = api_client_for(trainer)
    task_id = _claim(client).json()["id"]
    response = client.post(_task_url(task_id, "skip"), {"report": "boring"}, format="json")
    assert response.status_code == 400 and "report" in response.json()
    assert Task.objects.get(pk=task_id).state == "assigned"
    assert not PromptReport.objects.exists()


def test_a_blank_task_has_no_prompt_to_report(api_client_for, project, trainer):
    client = api_client_for(trainer)
    task_id = _claim(client).json()["id"]
    response = client.post(_task_url(task_id, "skip"), {"report": "nonsense"}, format="json")
    assert response.status_code == 400 and "report" in response.json()
    plain = client.post(_task_url(task_id, "skip"), {"reason": "not today"}, format="json")
    assert plain.status_code == 200
