"""Changes staff make in the admin to projects and memberships reach the project's change log."""

import pytest

from annotations.audit import audit_log
from annotations.models import Membership, Project
from tests.conftest import admin_url
from tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _resubmit(client, url: str, **changes) -> dict:
    """The admin change form's current data (with its inlines), with `changes` applied."""
    response = client.get(url)
    assert response.status_code == 200
    data: dict = {}
    form = response.context["adminform"].form
    for name in form.fields:
        value = form[name].value()
        if value is True:
            data[name] = "on"
        elif value not in (None, False):
            data[name] = value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[f"{formset.prefix}-{name}"] = management[name].value()
        for sub in formset.forms:
            for name in sub.fields:
                value = sub[name].value()
                if value not in (None, False, ""):
                    data[sub.add_prefix(name)] = value
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_a_project_changed_in_the_admin_is_logged(lead_client, world):
    project = world.a[Project]
    url = admin_url(Project, "change", project.pk)
    response = lead_client.post(url, _resubmit(lead_client, url, replies_per_set=7))
    assert response.status_code == 302, response.context and response.context["errors"]
    entry = audit_log(project).get()
    assert (entry.action, entry.actor, entry.reason) == (
        "project.update",
        world.lead,
        "in the admin",
    )
    assert (entry.before, entry.after) == ({"replies_per_set": 4}, {"replies_per_set": 7})


def test_memberships_changed_in_the_admin_are_logged(lead_client, world):
    project = world.a[Project]
    membership = world.a[Membership]
    trainer = membership.user
    response = lead_client.post(
        admin_url(Membership, "change", membership.pk),
        {"user": trainer.pk, "project": project.pk, "role": "engineer"},
    )
    assert response.status_code == 302
    response = lead_client.post(admin_url(Membership, "delete", membership.pk), {"post": "yes"})
    assert response.status_code == 302
    log = list(audit_log(project).values_list("action", "before", "after", "reason"))
    assert log == [
        ("member.remove", {"role": "engineer"}, None, "in the admin"),
        ("member.role", {"role": "trainer"}, {"role": "engineer"}, "in the admin"),
    ]


def test_a_member_added_through_the_project_inline_is_logged(admin_client, admin_user):
    project = ProjectFactory(slug="gamma", name="Gamma")
    newcomer = UserFactory(username="nia")
    url = admin_url(Project, "change", project.pk)
    data = _resubmit(admin_client, url)
    last = int(data["memberships-TOTAL_FORMS"]) - 1
    data[f"memberships-{last}-user"] = newcomer.pk
    data[f"memberships-{last}-role"] = "lead"
    response = admin_client.post(url, data)
    assert response.status_code == 302
    entry = audit_log(project).get()
    assert (entry.action, entry.target, entry.after) == ("member.add", "user nia", {"role": "lead"})
    assert entry.actor == admin_user
