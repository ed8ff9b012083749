"""Middleware of the site.

Security headers Django does not send itself: Content-Security-Policy and Permissions-Policy.

The values come from settings (`CONTENT_SECURITY_POLICY`, `PERMISSIONS_POLICY`); an empty value
sends no header. Base settings leave both empty; production sets them. A response that already
carries the header (a view that needs its own policy) keeps it.
"""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
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
