"""Pages keep working under production's Content-Security-Policy: no inline scripts or styles.

Every browser test runs under that policy and fails on a violation (tests/browser/conftest.py);
this one goes through the pages no other browser test opens, and checks the header itself.
"""

import pytest
from rest_framework.authtoken.models import Token

from tests.browser.conftest import PRODUCTION_CSP, log_in
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def permissions_policy(settings):
    settings.PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=()"


def test_pages_raise_no_csp_violations(page, permissions_policy):
    project = ProjectFactory(slug="alpha", name="Alpha", guidelines="# Be kind")
    user = UserFactory(username="lee", is_staff=True)
    MembershipFactory(project=project, user=user, role="lead")
    Token.objects.create(user=user)
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )

    log_in(page, "lee", "pw-for-tests")
    page.wait_for_url("**/")
    for path in (
        "/p/alpha/",
        "/p/alpha/exports/",
        "/p/alpha/import/",
        "/p/alpha/reviews/",
        "/p/alpha/explore/",
        "/p/alpha/explore/sets/",
        "/p/alpha/settings/",
        "/p/alpha/settings/labels/",
        "/p/alpha/settings/log/",
        "/p/alpha/members/",
        "/p/alpha/generations/",
        "/p/alpha/training/",
        "/projects/new/",
        "/admin/",
        "/accounts/profile/",
    ):
        response = page.goto(path)
        assert response.status == 200, path
        assert response.headers["content-security-policy"] == PRODUCTION_CSP
        page.wait_for_load_state("networkidle")

    # A token is shown in full once, right after it is issued; its field selects itself on
    # focus (parley.js, no inline handler).
    page.get_by_role("button", name="Issue a new token").click()
    page.wait_for_url("**/accounts/profile/")
    token = page.locator("#token-key")
    token.focus()
    assert page.evaluate(
        "() => { const f = document.getElementById('token-key'); return f.value.length > 0"
        " && f.selectionStart === 0 && f.selectionEnd === f.value.length; }"
    )
    # htmx loaded and took its indicator styles from parley.css, not an injected <style>; its
    # swaps leave style attributes alone.
    assert page.evaluate(
        "() => typeof htmx === 'object' && !document.querySelector('head style')"
        " && !htmx.config.attributesToSettle.includes('style')"
    )
    assert violations == []

    # The API docs start Swagger UI from a script URL, not an inline script; the styles of
    # drf-spectacular's page come from a file too.
    page.goto("/api/v1/docs/")
    page.get_by_role("heading", name="Parley API").first.wait_for()
    assert page.evaluate("() => getComputedStyle(document.body).margin") == "0px"
    assert violations == []
