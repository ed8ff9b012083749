"""The exports pages: the form and list, an export's live progress fragment and its downloads."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from exports.models import ExportSnapshot
from tests.exports.conftest import sha256

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
PAGE = "/p/alpha/exports/"


def detail(snapshot) -> str:
    return reverse("export-detail", args=[snapshot.project.slug, snapshot.pk])


def field_block(page: str, name: str) -> str:
    """The markup of one form field's wrapper (label, help, errors, input)."""
    match = re.search(
        rf'<div class="field[^"]*" data-field="{name}".*?</div>'
        r'\s*(?=<div class="field|</fieldset>)',
        page,
        re.S,
    )  # noqa: E501
    assert match, f"no field {name} on the page"
    return match.group(0)


@pytest.mark.parametrize("role", ["lead", "engineer"])
def test_the_page_has_the_form_and_the_projects_exports(client, request, role, queued_export):
    snapshot = queued_export("rankings")
    client.force_login(request.getfixturevalue(role))
    response = client.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert "csrfmiddlewaretoken" in page
    assert (
        '<option value="preferences" selected>Preferences: chosen / rejected pairs</option>' in page
    )
    for name in ("since", "until", "languages", "model_versions", "min_agreement",
                 "exclude_annotators", "pairs_from", "pair_strategy", "ties", "include_rewrites",
                 "length_balanced", "include_incomplete", "include_cancelled",
                 "allow_model_turns", "best_path_only", "sources", "exclude_sources",
                 "validation", "test", "seed", "gzip"):  # fmt: skip
        assert f'name="{name}"' in page, name
    # The project's flags are checkboxes; help texts say what a choice does and for which kinds.
    for flag in ("harmful", "untruthful", "pii"):
        assert f'type="checkbox" name="exclude_flags" value="{flag}"' in page
    assert "(preferences, rankings only)" in field_block(page, "min_agreement")
    assert 'data-kinds="preferences"' in field_block(page, "length_balanced")
    assert "<legend>Pairs</legend>" in page and 'type="date"' in page
    # The list links to the export.
    assert f'href="{detail(snapshot)}">#{snapshot.pk}</a>' in page
    assert "state-queued" in page and "eve" in page


def test_trainers_get_403_and_outsiders_404_on_every_page(client, trainer, outsider, queued_export):
    snapshot = queued_export()
    urls = [PAGE, detail(snapshot), f"{detail(snapshot)}download?split=train"]
    for user, status in ((trainer, 403), (outsider, 404)):
        client.force_login(user)
        for url in urls:
            assert client.get(url).status_code == status, (user, url)
        assert client.post(PAGE, {"kind": "sft"}).status_code == status
    assert ExportSnapshot.objects.count() == 1


def test_pages_need_a_login(client, queued_export):
    snapshot = queued_export()
    for url in (PAGE, detail(snapshot)):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_an_export_of_another_project_is_404_under_this_ones_url(client, engineer, queued_export):
    from tests.factories import MembershipFactory, ProjectFactory

    beta = ProjectFactory(slug="beta")
    MembershipFactory(project=beta, user=engineer, role="engineer")
    snapshot = queued_export()
    client.force_login(engineer)
    assert client.get(f"/p/beta/exports/{snapshot.pk}/").status_code == 404


def test_posting_the_form_queues_an_export_and_redirects_to_it(
    client, engineer, project, django_capture_on_commit_callbacks, mocker
):
    delay = mocker.patch("exports.tasks.build_export.delay")
    client.force_login(engineer)
    form = {
        "kind": "preferences",
        "since": "2020-01-01",
        "languages": "en, de",
        "min_agreement": "0.4",
        "exclude_flags": ["harmful", "pii"],
        "pairs_from": "annotator",
        "pair_strategy": "best_vs_rest",
        "ties": "skip",
        "length_balanced": "on",
        "validation": "0.1",
        "test": "0",
        "seed": "7",
        "exclude_annotators": "",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(PAGE, form)
    snapshot = ExportSnapshot.objects.get()
    assert response.status_code == 302 and response["Location"] == detail(snapshot)
    delay.assert_called_once_with(snapshot.pk)
    choices = snapshot.choices
    assert snapshot.kind == "preferences" and snapshot.created_by == engineer
    assert choices["since"] == "2020-01-01" and choices["languages"] == ["de", "en"]
    assert choices["min_agreement"] == 0.4 and choices["exclude_flags"] == ["harmful", "pii"]
    assert choices["pairs_from"] == "annotator" and choices["pair_strategy"] == "best_vs_rest"
    assert choices["length_balanced"] is True and choices["gzip"] is False
    assert (choices["validation"], choices["test"], choices["seed"]) == (0.1, 0.0, 7)


def test_a_double_click_on_the_form_makes_one_export(
    client, engineer, project, django_capture_on_commit_callbacks, mocker
):
    delay = mocker.patch("exports.tasks.build_export.delay")
    client.force_login(engineer)
    form = {"kind": "sft", "validation": "0.05", "test": "0", "seed": "0"}
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(PAGE, form)
        second = client.post(PAGE, form)
    snapshot = ExportSnapshot.objects.get()
    assert first["Location"] == second["Location"] == detail(snapshot)
    delay.assert_called_once_with(snapshot.pk)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(PAGE, {**form, "seed": "1"})  # other choices: another export
    assert ExportSnapshot.objects.count() == 2


def test_a_form_without_the_csrf_token_is_refused(project, engineer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(engineer)
    assert client.post(PAGE, {"kind": "prompts"}).status_code == 403
    page = client.get(PAGE).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert client.post(PAGE, {"kind": "prompts", "csrfmiddlewaretoken": token}).status_code == 302
    # htmx requests carry it in a header, from <body hx-headers>.
    assert re.search(r'<body hx-headers=\'\{"X-CSRFToken": "[^"]+"\}\'>', page)


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"kind": "preferences", "min_agreement": "1.5"}, "min_agreement", "between 0 and 1"),
        ({"kind": "sft", "min_agreement": "0.5"}, "min_agreement", "Applies to"),
        ({"kind": "preferences", "validation": "0.7", "test": "0.5"}, "test", "leave rows"),
        ({"kind": "preferences", "since": "2024-05-02", "until": "2024-05-01"}, "until", "before"),
        ({"kind": "preferences", "since": "not a date"}, "since", "valid date"),
        ({"kind": "rankings", "exclude_annotators": "nobody"}, "exclude_annotators", "nobody"),
        ({"kind": "preferences", "ties": "keep", "length_balanced": "on"}, "length_balanced",
         "ties skipped"),
    ],
)  # fmt: skip
def test_errors_are_shown_beside_the_field_they_name(client, engineer, form, field, message):
    client.force_login(engineer)
    response = client.post(PAGE, form)
    assert response.status_code == 200
    page = response.content.decode()
    block = field_block(page, field)
    assert "has-error" in block and message in block, block
    assert "autofocus" in block  # the form is long: the first error takes the focus
    assert not ExportSnapshot.objects.exists()


def test_user_text_is_escaped(client, engineer, project):
    project.name = "<script>alert(1)</script> Team"
    project.save()
    client.force_login(engineer)
    page = client.post(PAGE, {"kind": "preferences", "languages": "<b>bold</b>"}).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Team" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in field_block(page, "languages")


def test_the_project_page_links_to_exports_for_those_who_may_export(client, engineer, trainer):
    client.force_login(engineer)
    assert f'href="{PAGE}"' in client.get("/p/alpha/").content.decode()
    client.force_login(trainer)
    assert f'href="{PAGE}"' not in client.get("/p/alpha/").content.decode()


# --- one export's page -----------------------------------------------------------------------


def test_a_queued_export_polls_its_progress_fragment(client, engineer, queued_export):
    snapshot = queued_export("sft", {"seed": 5})
    client.force_login(engineer)
    page = client.get(detail(snapshot)).content.decode()
    assert "<html" in page and 'data-state="queued"' in page
    assert f'hx-get="{detail(snapshot)}" hx-trigger="every 1s"' in page
    assert "Split seed" in page and ">5<" in page  # the choices that differ from the defaults

    fragment = client.get(detail(snapshot), **HTMX)
    assert fragment.status_code == 200 and "HX-Request" in fragment["Vary"]
    text = fragment.content.decode()
    assert "<html" not in text and text.lstrip().startswith(
        '<section class="card" id="export-progress"'
    )
    assert 'hx-trigger="every 1s"' in text and "Waiting for a worker" in text


def test_a_running_export_shows_rows_written_of_rows_expected(client, engineer, queued_export):
    snapshot = queued_export()
    ExportSnapshot.objects.filter(pk=snapshot.pk).update(
        state="running", rows_expected=400, rows_written=100, attempts=1
    )
    client.force_login(engineer)
    text = client.get(detail(snapshot), **HTMX).content.decode()
    assert 'max="400" value="100"' in text and "100 of about 400 rows written (25%)" in text
    assert 'hx-trigger="every 1s"' in text


def test_a_done_export_stops_polling_and_offers_its_downloads(client, engineer, build_export):
    snapshot = build_export("preferences", {"test": 0.1})
    client.force_login(engineer)
    text = client.get(detail(snapshot), **HTMX).content.decode()
    assert 'data-state="done"' in text and "hx-trigger" not in text
    for split, entry in snapshot.manifest["splits"].items():
        assert f'href="{detail(snapshot)}download?split={split}"' in text
        assert entry["sha256"] in text
    assert f'href="{detail(snapshot)}download?file=manifest.json"' in text
    assert f'href="{detail(snapshot)}download?file=README.md"' in text
    assert "Length bias" in text and "the chosen reply is the longer one in" in text
    assert f"{snapshot.manifest['rows']} rows written" in text


def test_a_failed_export_shows_its_error_escaped(client, engineer, queued_export):
    snapshot = queued_export()
    ExportSnapshot.objects.filter(pk=snapshot.pk).update(
        state="failed", attempts=3, error="ValueError: <img src=x onerror=alert(1)>"
    )
    client.force_login(engineer)
    text = client.get(detail(snapshot)).content.decode()
    assert 'data-state="failed"' in text and "after 3 attempts" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "<img src=x" not in text
    assert "hx-trigger" not in text.split('id="export-progress"')[1]


def test_the_page_download_streams_the_manifests_bytes(client, lead, build_export):
    snapshot = build_export("rankings")
    client.force_login(lead)
    entry = snapshot.manifest["splits"]["train"]
    response = client.get(f"{detail(snapshot)}download?split=train")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/jsonl"
    assert f'filename="alpha-rankings-{snapshot.pk}-train.jsonl"' in response["Content-Disposition"]
    assert sha256(b"".join(response.streaming_content)) == entry["sha256"]
    bad = client.get(f"{detail(snapshot)}download?split=holdout")
    assert bad.status_code == 400 and b"holdout" in bad.content


def test_the_page_download_of_an_unfinished_export_is_409(client, engineer, queued_export):
    snapshot = queued_export()
    client.force_login(engineer)
    response = client.get(f"{detail(snapshot)}download?split=train")
    assert response.status_code == 409 and b"once it is done" in response.content


def test_the_list_fragment_polls_while_an_export_is_unfinished(client, engineer, queued_export):
    snapshot = queued_export()
    client.force_login(engineer)
    text = client.get(PAGE, **HTMX).content.decode()
    assert text.lstrip().startswith('<div id="snapshot-table"') and "every 2s" in text
    ExportSnapshot.objects.filter(pk=snapshot.pk).update(state="failed")
    assert "every 2s" not in client.get(PAGE, **HTMX).content.decode()
