"""Security headers Django does not send itself: Content-Security-Policy and Permissions-Policy.

The values come from settings (`CONTENT_SECURITY_POLICY`, `PERMISSIONS_POLICY`); an empty value
sends no header. Base settings leave both empty; production sets them. A response that already
carries the header (a view that needs its own policy) keeps it.
"""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

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
