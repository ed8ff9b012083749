"""A member logs in, sees their projects, opens one, and logs out; an outsider sees nothing."""

import pytest

from tests.browser.conftest import log_in
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_trainer_logs_in_opens_a_project_and_logs_out(page):
    project = ProjectFactory(slug="alpha", name="Alpha", guidelines="# Be kind\n\nAlways.")
    ProjectFactory(slug="secret", name="Secret")
    MembershipFactory(project=project, user=UserFactory(username="tina"), role="trainer")

    log_in(page, "tina", "pw-for-tests")
    page.wait_for_url("**/")
    assert page.get_by_role("heading", name="Your projects").is_visible()
    assert page.get_by_role("link", name="Alpha").is_visible()
    assert page.get_by_text("Secret").count() == 0

    page.get_by_role("link", name="Alpha").click()
    page.wait_for_url("**/p/alpha/")
    assert page.get_by_role("heading", name="Be kind").is_visible()

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/**")
    page.goto("/p/alpha/")
    assert "/accounts/login/" in page.url


def test_bad_password_is_reported_on_the_page(page):
    UserFactory(username="tina")
    log_in(page, "tina", "wrong")
    assert page.get_by_text("correct username and password").is_visible()
