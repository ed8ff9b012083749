"""The pages every member meets: login, home, a project's page, the profile with the API token."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from annotations.reports import prompt_report_create
from tests.factories import MembershipFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def test_pages_need_a_login(client):
    for url in (reverse("home"), reverse("profile"), reverse("project-detail", args=["alpha"])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_login_then_home_lists_only_my_projects(client, project, trainer):
    ProjectFactory(slug="secret", name="Secret project")
    response = client.post(reverse("login"), {"username": "tina", "password": "pw-for-tests"})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    page = client.get(reverse("home")).content.decode()
    assert "Alpha" in page
    assert "Secret project" not in page
    assert reverse("project-detail", args=["alpha"]) in page


def test_wrong_password_shows_an_error(client, trainer):
    response = client.post(reverse("login"), {"username": "tina", "password": "nope"})
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()


def test_outsider_gets_404_for_a_project_page(client, project, outsider):
    client.force_login(outsider)
    assert client.get(reverse("project-detail", args=["alpha"])).status_code == 404
    # A project that does not exist looks the same as one the user cannot see.
    assert client.get(reverse("project-detail", args=["nope"])).status_code == 404


def test_guidelines_are_rendered_and_sanitised(client, project, trainer):
    project.guidelines = (
        "# Rules\n\n**Be kind.**\n\n<script>alert('x')</script>\n\n[x](javascript:alert(1))"
    )
    project.description = "<b>bold</b> description"
    project.save()
    client.force_login(trainer)
    page = client.get(reverse("project-detail", args=["alpha"])).content.decode()
    assert "<h1>Rules</h1>" in page and "<strong>Be kind.</strong>" in page
    assert "<script>alert" not in page
    assert "javascript:alert" not in page
    assert "&lt;b&gt;bold&lt;/b&gt; description" in page


def test_members_table_only_for_leads(client, project, trainer, lead):
    client.force_login(trainer)
    assert "Members" not in client.get(reverse("project-detail", args=["alpha"])).content.decode()
    client.force_login(lead)
    page = client.get(reverse("project-detail", args=["alpha"])).content.decode()
    assert "Members" in page and "tina" in page


def test_engineer_creates_and_regenerates_a_token(project, engineer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(engineer)
    page = client.get(reverse("profile"))
    assert "You have no token yet" in page.content.decode()
    # Without the CSRF token the form post is refused.
    assert client.post(reverse("token-regenerate")).status_code == 403
    csrf = page.context["csrf_token"]
    response = client.post(reverse("token-regenerate"), {"csrfmiddlewaretoken": str(csrf)})
    assert response.status_code == 302
    first = Token.objects.get(user=engineer).key
    shown = client.get(reverse("profile")).content.decode()
    # Right after it is made: in full, once, with a clear word to copy it now.
    assert f'value="{first}"' in shown
    assert "Your API token is ready" in shown and "Copy it now" in shown
    assert "only time Parley shows it" in shown and 'data-copy="token-key"' in shown
    # Afterwards: only its last characters.
    again = client.get(reverse("profile")).content.decode()
    assert first not in again and f"…{first[-4:]}" in again and "issued" in again
    client.post(reverse("token-regenerate"), {"csrfmiddlewaretoken": str(csrf)})
    second = Token.objects.get(user=engineer).key
    assert second != first
    reissued = client.get(reverse("profile")).content.decode()
    assert f'value="{second}"' in reissued and "Your new API token" in reissued
    assert "the previous token no longer works" in reissued


def test_logout_is_a_post(client, trainer):
    client.force_login(trainer)
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_pages_carry_csrf_for_htmx(client, trainer):
    client.force_login(trainer)
    page = client.get(reverse("home")).content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in page
    assert "/static/vendor/htmx.org/" in page
    assert "cdn" not in page.lower() and "unpkg" not in page.lower()


def test_home_shows_queue_counts(client, project, trainer):
    from annotations.services import conversation_start

    for text in ("one", "two", "three", "spam"):
        _, root = conversation_start(project=project, text=text, source="prompt")
    # A reported prompt leaves the pool while its report is open.
    prompt_report_create(project=project, message=root, reporter=None, reason="nonsense")
    other = ProjectFactory(slug="beta", name="Beta")
    MembershipFactory(project=other, user=trainer, role="trainer")
    client.force_login(trainer)
    queues = {q.project.slug: q for q in client.get(reverse("home")).context["queues"]}
    assert queues["alpha"].prompts_in_pool == 3
    assert queues["beta"].prompts_in_pool == 0
    assert queues["alpha"].role == "trainer"
