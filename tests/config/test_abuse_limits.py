"""Abuse limits: API throttling, the login lockout, and the security headers middleware."""

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
PASSWORD = "the-right-password-123"  # noqa: S105


@pytest.fixture
def low_rates(mocker):
    """Three requests a minute. DRF reads the rates into the throttle class once, at import."""
    cache.clear()
    mocker.patch.object(SimpleRateThrottle, "THROTTLE_RATES", {"user": "3/min", "anon": "3/min"})
    yield
    cache.clear()


def test_every_api_view_throttles_users_and_anonymous_callers():
    kinds = APIView.throttle_classes
    assert any(issubclass(kind, UserRateThrottle) for kind in kinds)
    assert any(issubclass(kind, AnonRateThrottle) for kind in kinds)


def test_a_user_over_the_rate_gets_429(low_rates, api_client_for, trainer, lead):
    client = api_client_for(trainer)
    assert [client.get("/api/v1/me/").status_code for _ in range(3)] == [200, 200, 200]
    response = client.get("/api/v1/me/")
    assert response.status_code == 429
    assert "Retry-After" in response
    # Counted per user: another user is not held back by the first one's requests.
    assert api_client_for(lead).get("/api/v1/me/").status_code == 200


@pytest.fixture
def user():
    account = UserFactory(username="lola")
    account.set_password(PASSWORD)
    account.save()
    return account


def _login(client, password, ip="10.0.0.1"):
    return client.post(LOGIN, {"username": "lola", "password": password}, REMOTE_ADDR=ip)


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3)
def test_repeated_failed_logins_lock_the_account_out(client, user, api_client_for):
    for _ in range(2):
        assert _login(client, "wrong").status_code == 200  # the form again, with its error
    assert _login(client, "wrong").status_code == 429  # the third failure locks
    response = _login(client, PASSWORD)
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session
    # Locked by username and address: the same account from elsewhere still logs in ...
    assert _login(client, PASSWORD, ip="10.0.0.2").status_code == 302
    # ... and API tokens are not part of the lockout.
    assert api_client_for(user).get("/api/v1/me/").status_code == 200


@override_settings(AXES_ENABLED=True, AXES_FAILURE_LIMIT=3)
def test_a_successful_login_resets_the_failure_count(client, user):
    for _ in range(2):
        _login(client, "wrong")
    assert _login(client, PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        _login(client, "wrong")
    assert _login(client, PASSWORD).status_code == 302


def test_security_headers_are_off_unless_configured(client):
    response = client.get(LOGIN)
    assert "Content-Security-Policy" not in response
    assert "Permissions-Policy" not in response


@override_settings(
    CONTENT_SECURITY_POLICY="default-src 'self'", PERMISSIONS_POLICY="camera=(), microphone=()"
)
def test_security_headers_are_sent_when_configured(client):
    response = client.get(LOGIN)
    assert response["Content-Security-Policy"] == "default-src 'self'"
    assert response["Permissions-Policy"] == "camera=(), microphone=()"
