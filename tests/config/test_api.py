"""API error responses shared by every app (config/api.py)."""

import pytest

from tests.factories import MembershipFactory, UserFactory

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/v1/projects/{slug}/exports/", DEEP),
        ("/api/v1/projects/{slug}/exports/", b'{"kind": "sft", "choices": ' + DEEP + b"}"),
        ("/api/v1/projects/{slug}/tasks/next", DEEP),
        ("/api/v1/projects/{slug}/generations/", b'{"messages": ' + DEEP + b"}"),
    ],
)
def test_json_nested_thousands_deep_is_a_400_not_a_500(project, api_client_for, path, body):
    lead = MembershipFactory(project=project, user=UserFactory(username="deep"), role="lead").user
    response = api_client_for(lead).post(
        path.format(slug=project.slug), data=body, content_type="application/json"
    )
    assert response.status_code == 400, response.content[:200]
    assert response.json() == {"detail": "Malformed JSON: nested too deeply."}


def test_a_recursion_error_outside_parsing_is_not_hidden(project, api_client_for, mocker):
    lead = MembershipFactory(project=project, user=UserFactory(username="deep"), role="lead").user
    mocker.patch("exports.apis.export_request", side_effect=RecursionError("a real bug"))
    client = api_client_for(lead)
    client.raise_request_exception = True
    with pytest.raises(RecursionError):
        client.post(
            f"/api/v1/projects/{project.slug}/exports/",
            data={"kind": "sft"},
            format="json",
        )
