"""What every page shares: the favicon, branded 401/403/404 pages in the site's frame, the API
docs with a way back to the app, and the 401 a page's own request gets once signed out
(SignInRequiredMiddleware) while a page load still goes to the login form."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.test import Client

pytestmark = pytest.mark.django_db

FAVICON = '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">'


def test_the_favicon_is_our_own_svg_and_every_page_links_it(client, trainer):
    path = finders.find("img/favicon.svg")
    assert path is not None
    with open(path, encoding="utf-8") as svg:
        assert svg.read().lstrip().startswith("<svg")
    assert FAVICON in client.get("/accounts/login/").content.decode()
    client.force_login(trainer)
    for url in ("/", "/accounts/profile/", "/p/alpha/"):
        assert FAVICON in client.get(url).content.decode(), url


@pytest.mark.parametrize(
    ("who", "url", "status", "heading"),
    [
        ("outsider", "/p/alpha/", 404, "Page not found"),
        ("trainer", "/p/alpha/exports/", 403, "You don't have access to this page"),
        ("trainer", "/no/such/page/", 404, "Page not found"),
    ],
)
def test_403_and_404_are_branded_pages(who, url, status, heading, request):
    client = Client()
    client.force_login(request.getfixturevalue(who))
    response = client.get(url)
    page = response.content.decode()
    assert response.status_code == status
    assert f"<h1>{heading}</h1>" in page
    assert 'class="site-header"' in page and FAVICON in page  # the site's frame
    assert 'href="/"' in page  # a way back


def test_a_signed_out_htmx_request_gets_the_branded_401_page(client):
    response = client.get(
        "/p/alpha/training/", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="http://t/p/alpha/x/"
    )
    page = response.content.decode()
    assert response.status_code == 401
    assert "<h1>Please log in</h1>" in page and FAVICON in page
    assert 'href="/accounts/login/?next=/p/alpha/x/"' in page


def test_a_signed_out_fetch_gets_401_json_and_a_page_load_the_login_form(client):
    save = client.post("/demonstrations/1/autosave", data="{}", content_type="application/json")
    assert save.status_code == 401
    assert save.json()["code"] == "not_authenticated" and "log in again" in save.json()["detail"]
    plain_fetch = client.get("/demonstrations/1/autosave?page=1", HTTP_ACCEPT="*/*")
    assert plain_fetch.status_code == 401
    page_load = client.get(
        "/p/alpha/", HTTP_ACCEPT="text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    )
    assert page_load.status_code == 302
    assert page_load["Location"].startswith("/accounts/login/?next=")


def test_the_api_docs_lead_back_to_the_app(client, trainer):
    client.force_login(trainer)
    page = client.get("/api/v1/docs/").content.decode()
    assert '<a href="/">← Back to Parley</a>' in page
    assert 'href="/accounts/profile/"' in page
    assert FAVICON in page
    assert "favicon-32x32.png" not in page  # Swagger's own icon is not linked
    assert "<style" not in page.split("<body")[1]  # the bar's style is a static file


TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_no_template_carries_inline_styles():
    """Production's CSP refuses inline styles: they live in static/css/."""
    comments = re.compile(r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}", re.S)
    found = [
        f"{path.relative_to(TEMPLATES)}: {match[0]}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        for match in re.finditer(
            r"<style\b|\sstyle\s*=", comments.sub("", path.read_text(encoding="utf-8"))
        )
    ]
    assert found == []


@pytest.mark.parametrize("name", ["500.html", "503.html"])
def test_the_standalone_error_pages_take_their_style_from_a_file(name):
    page = render_to_string(name)
    assert 'href="/static/css/error_page.css"' in page and 'class="error-page"' in page
    assert finders.find("css/error_page.css") is not None
