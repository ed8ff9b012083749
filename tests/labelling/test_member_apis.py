"""The members API: leads list, add, re-role and remove members; everyone else is refused."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotations.audit import audit_log
from annotations.models import Membership
from labelling.models import Task
from tests.factories import UserFactory, claim, make_ranking_set

pytestmark = pytest.mark.django_db


def _urls(project, member_pk):
    return [
        ("get", reverse("api-project-members", kwargs={"slug": project.slug}), None),
        (
            "post",
            reverse("api-project-members", kwargs={"slug": project.slug}),
            {"user": "zoe", "role": "trainer"},
        ),
        (
            "patch",
            reverse("api-project-member", kwargs={"slug": project.slug, "pk": member_pk}),
            {"role": "lead"},
        ),
        (
            "delete",
            reverse("api-project-member", kwargs={"slug": project.slug, "pk": member_pk}),
            None,
        ),
    ]


def test_access_matrix(api_client_for, project, trainer, lead, engineer, outsider):
    UserFactory(username="zoe")
    member = Membership.objects.get(project=project, user=trainer)
    for method, url, body in _urls(project, member.pk):
        for user, expected in [(outsider, 404), (trainer, 403), (engineer, 403)]:
            response = getattr(api_client_for(user), method)(url, body, format="json")
            assert response.status_code == expected, (user, method, url)
    assert APIClient().get(_urls(project, member.pk)[0][1]).status_code in (401, 403)
    assert Membership.objects.get(pk=member.pk).role == "trainer"
    assert not Membership.objects.filter(user__username="zoe").exists()


def test_lead_adds_changes_and_removes(api_client_for, project, lead, trainer):
    UserFactory(username="zoe", email="zoe@example.com")
    client = api_client_for(lead)
    url = reverse("api-project-members", kwargs={"slug": project.slug})
    listed = client.get(url).json()
    assert sorted((m["username"], m["role"]) for m in listed) == [
        ("lee", "lead"),
        ("tina", "trainer"),
    ]
    created = client.post(url, {"user": "ZOE@example.com", "role": "engineer"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert (body["username"], body["role"]) == ("zoe", "engineer")
    again = client.post(url, {"user": "zoe", "role": "trainer"}, format="json")
    assert again.status_code == 400 and "user" in again.json()
    unknown = client.post(url, {"user": "nobody", "role": "trainer"}, format="json")
    assert unknown.json() == {"user": ["No active account has this username or e-mail."]}
    bad_role = client.post(url, {"user": "zoe", "role": "owner"}, format="json")
    assert bad_role.status_code == 400 and "role" in bad_role.json()
    assert client.post(url, "[1,", content_type="application/json").status_code == 400

    detail = reverse("api-project-member", kwargs={"slug": project.slug, "pk": body["id"]})
    patched = client.patch(detail, {"role": "lead"}, format="json")
    assert patched.status_code == 200 and patched.json()["role"] == "lead"

    make_ranking_set(project, k=2, needed=1)
    held = claim(project, trainer)
    tina = Membership.objects.get(project=project, user=trainer)
    detail = reverse("api-project-member", kwargs={"slug": project.slug, "pk": tina.pk})
    removed = client.delete(detail)
    assert removed.status_code == 200 and removed.json() == {"tasks_returned": 1}
    held.refresh_from_db()
    assert held.state == Task.State.OPEN and held.assignee is None
    assert client.delete(detail).status_code == 404
    actions = list(audit_log(project).values_list("action", flat=True))
    assert actions == ["member.remove", "member.role", "member.add"]


def test_the_only_lead_is_kept(api_client_for, project, lead):
    own = Membership.objects.get(project=project, user=lead)
    client = api_client_for(lead)
    url = reverse("api-project-member", kwargs={"slug": project.slug, "pk": own.pk})
    response = client.patch(url, {"role": "trainer"}, format="json")
    assert response.status_code == 400 and "role" in response.json()
    assert client.delete(url).status_code == 400
    assert Membership.objects.get(pk=own.pk).role == "lead"
