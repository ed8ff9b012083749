"""DatabaseUnavailableMiddleware: a database that went away answers 503 with Retry-After (the
drills in tests/drills restart PostgreSQL under a real server; this checks both shapes)."""

import json

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.test import RequestFactory

from config.middleware import DatabaseUnavailableMiddleware

middleware = DatabaseUnavailableMiddleware(lambda request: HttpResponse("ok"))


def test_an_api_request_gets_json_503_with_retry_after():
    request = RequestFactory().post("/api/v1/tasks/1/submit")
    response = middleware.process_exception(request, OperationalError("server closed"))
    assert response.status_code == 503 and response["Retry-After"] == "2"
    assert json.loads(response.content)["code"] == "database_unavailable"


def test_a_page_gets_a_short_html_503():
    request = RequestFactory().get("/p/alpha/rank/")
    response = middleware.process_exception(request, InterfaceError("connection already closed"))
    assert response.status_code == 503 and response["Retry-After"] == "2"
    assert b"Back in a moment" in response.content


def test_other_errors_are_left_to_django():
    request = RequestFactory().get("/p/alpha/")
    assert middleware.process_exception(request, ValueError("a bug")) is None
