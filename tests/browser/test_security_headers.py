"""Pages keep working under a Content-Security-Policy with no inline scripts or styles.

Production allows inline styles for now (the ranking and demonstration pages still carry
<style> blocks, see config/settings/production.py); the pages checked here need none.
"""

import pytest
from rest_framework.authtoken.models import Token

from tests.browser.conftest import log_in
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STRICT = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)


@pytest.fixture
def strict_csp(settings):
    settings.CONTENT_SECURITY_POLICY = STRICT
    settings.PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=()"


def test_pages_raise_no_csp_violations(page, strict_csp):
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
        "/accounts/profile/",
    ):
        response = page.goto(path)
        assert response.status == 200, path
        assert response.headers["content-security-policy"] == STRICT
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
    # htmx loaded and took its indicator styles from parley.css, not an injected <style>.
    assert page.evaluate("() => typeof htmx === 'object' && !document.querySelector('head style')")
    assert violations == []

    # The API docs start Swagger UI from a script URL, not an inline script. (drf-spectacular's
    # page carries a small <style> block: production's policy allows inline styles.)
    page.goto("/api/v1/docs/")
    page.get_by_role("heading", name="Parley API").first.wait_for()
    assert [text for text in violations if "script" in text] == []
