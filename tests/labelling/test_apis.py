"""The REST base: token authentication, the caller's projects, the schema and its docs page."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_projects_need_a_token(client):
    response = client.get("/api/v1/projects/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")


def test_bad_token_is_refused(client, project, trainer):
    response = client.get("/api/v1/projects/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401


def test_projects_lists_the_callers_projects(api_client_for, project, engineer, outsider):
    from tests.factories import ProjectFactory

    ProjectFactory(slug="hidden")
    data = api_client_for(engineer).get("/api/v1/projects/").json()
    assert [p["slug"] for p in data] == ["alpha"]
    assert data[0]["role"] == "engineer"
    assert "export" in data[0]["capabilities"] and "annotate" not in data[0]["capabilities"]
    assert api_client_for(outsider).get("/api/v1/projects/").json() == []


def test_project_detail_is_404_for_outsiders(api_client_for, project, trainer, outsider):
    assert api_client_for(trainer).get("/api/v1/projects/alpha/").json()["slug"] == "alpha"
    assert api_client_for(outsider).get("/api/v1/projects/alpha/").status_code == 404


def test_me(api_client_for, trainer):
    assert api_client_for(trainer).get("/api/v1/me/").json()["username"] == "tina"


def test_schema_with_a_token(api_client_for, client, trainer):
    assert client.get("/api/v1/schema/").status_code == 401
    response = api_client_for(trainer).get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "Parley API"
    assert "/api/v1/projects/" in schema["paths"]
    assert "tokenAuth" in schema["components"]["securitySchemes"]


def test_docs_page_uses_local_static_files(client, trainer):
    client.force_login(trainer)
    page = client.get(reverse("api-docs")).content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "https://" not in page and "cdn" not in page.lower()
    # No inline script (the production Content-Security-Policy allows none): every <script> has
    # a src, the start-up script included.
    assert page.count("<script") == page.count("<script src=") == 3
    script = client.get(reverse("api-docs") + "?script")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


def test_a_token_of_a_deactivated_user_is_refused(api_client_for, trainer):
    client = api_client_for(trainer)
    assert client.get("/api/v1/me/").status_code == 200
    trainer.is_active = False
    trainer.save(update_fields=["is_active"])
    response = client.get("/api/v1/me/")
    assert response.status_code == 401
    assert "inactive" in response.json()["detail"]
