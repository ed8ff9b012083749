"""One module decides who sees a project and what their role lets them do."""

import pytest
from django.http import Http404

from annotations.access import AccessDenied, can, project_for_member, projects_for_user

pytestmark = pytest.mark.django_db


def test_members_see_their_project_outsiders_get_404(project, trainer, outsider):
    assert project_for_member(trainer, "alpha") == project
    with pytest.raises(Http404):
        project_for_member(outsider, "alpha")
    with pytest.raises(Http404):
        project_for_member(trainer, "no-such-project")
    assert list(projects_for_user(outsider)) == []


def test_roles_grant_capabilities(project, trainer, lead, engineer):
    assert can(trainer, project, "annotate") and not can(trainer, project, "export")
    assert can(lead, project, "manage") and can(lead, project, "annotate")
    assert can(engineer, project, "export") and can(engineer, project, "train")
    assert not can(engineer, project, "manage")
    with pytest.raises(AccessDenied, match="does not allow 'export'"):
        project_for_member(trainer, "alpha", capability="export")


def test_inactive_projects_are_hidden(project, trainer):
    project.is_active = False
    project.save(update_fields=["is_active"])
    with pytest.raises(Http404):
        project_for_member(trainer, "alpha")


def test_superusers_see_every_active_project_as_leads(project, outsider):
    from django.contrib.auth.models import AnonymousUser

    outsider.is_superuser = True
    outsider.save(update_fields=["is_superuser"])
    found = project_for_member(outsider, "alpha", capability="manage")
    assert found == project and found.member_role is None
    assert can(outsider, found, "manage")
    with pytest.raises(Http404):
        project_for_member(AnonymousUser(), "alpha")


def test_tasks_of_a_project_are_found_for_its_members_only(project, trainer, outsider):
    from labelling.leases import task_for_member
    from tests.factories import make_ranking_set

    task = make_ranking_set(project).tasks.first()
    assert task_for_member(task_id=task.pk, user=trainer) == task
    for user, task_id in ((outsider, task.pk), (trainer, 10**9)):
        with pytest.raises(Http404):
            task_for_member(task_id=task_id, user=user)
    project.is_active = False
    project.save(update_fields=["is_active"])
    with pytest.raises(Http404):
        task_for_member(task_id=task.pk, user=trainer)
    outsider.is_superuser = True
    outsider.save(update_fields=["is_superuser"])
    with pytest.raises(Http404):
        task_for_member(task_id=task.pk, user=outsider)
