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
