"""Middleware of the site.

Security headers Django does not send itself: Content-Security-Policy and Permissions-Policy.
A signed-out request that is not a page load answers 401 instead of the login redirect.

The values come from settings (`CONTENT_SECURITY_POLICY`, `PERMISSIONS_POLICY`); an empty value
sends no header. Base settings leave both empty; production sets them. A response that already
carries the header (a view that needs its own policy) keeps it.
"""

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import resolve_url
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

_HEADERS = (
    ("Content-Security-Policy", "CONTENT_SECURITY_POLICY"),
    ("Permissions-Policy", "PERMISSIONS_POLICY"),
)


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        for header, setting in _HEADERS:
            value = getattr(settings, setting, "")
            if value:
                response.headers.setdefault(header, value)
        return response


class DatabaseUnavailableMiddleware:
    """A database that went away mid-request (a restart, a failover, a dropped connection)
    answers 503 with `Retry-After`, never a 500.

    Requests that change data run in transactions, so an interrupted one stored nothing or
    everything; the API's writes are idempotent (claiming again returns the task one holds,
    submitting again returns the stored result, page saves are numbered), so a client retries
    safely. API paths get JSON, pages a short HTML page. Django closes the broken connection when
    the request ends, and the health check (`CONN_HEALTH_CHECKS`) replaces a stale persistent
    one before the next request uses it.
    """

    RETRY_AFTER_SECONDS = 2

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        first_line = (str(exception).strip().splitlines() or [type(exception).__name__])[0]
        logger.warning(
            "Database unavailable during %s %s: %s", request.method, request.path, first_line
        )
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse(
                {
                    "detail": "The database is unavailable for a moment. Retry in a few "
                    "seconds: sending this request again is safe.",
                    "code": "database_unavailable",
                },
                status=503,
            )
        else:
            response = HttpResponse(render_to_string("503.html"), status=503)
        response.headers["Retry-After"] = str(self.RETRY_AFTER_SECONDS)
        return response


class SignInRequiredMiddleware:
    """A page's own requests (htmx, autosaves by `fetch`) that meet a signed-out session answer
    401, not the redirect to the login page: followed, the redirect would swap the login form
    into a fragment or hand a script HTML where it expects JSON. The page then says the session
    ended (parley.js). A page load (a browser accepts text/html; htmx aside) and a client that
    sends no Accept header keep the redirect.
    JSON callers get `{"detail", "code": "not_authenticated"}`, the rest the 401 page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 302 or not self._to_login(response):
            return response
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return response  # a view that sends a signed-in user to the login page on purpose
        is_htmx = request.headers.get("HX-Request") == "true"
        accept = request.headers.get("Accept")
        is_json = request.content_type == "application/json"
        if not (is_htmx or is_json or (accept and "text/html" not in accept)):
            return response  # a page load (or a client that says nothing of what it accepts)
        wants_json = not is_htmx and (is_json or "application/json" in (accept or ""))
        if wants_json:
            return JsonResponse(
                {
                    "detail": "Your session has ended: log in again, then retry",
                    "code": "not_authenticated",
                },
                status=401,
            )
        page = urlsplit(request.headers.get("HX-Current-URL", "")).path or request.path
        body = render_to_string("401.html", {"next": page}, request=request)
        return HttpResponse(body, status=401)

    @staticmethod
    def _to_login(response: HttpResponse) -> bool:
        return urlsplit(response.get("Location", "")).path == resolve_url(settings.LOGIN_URL)
