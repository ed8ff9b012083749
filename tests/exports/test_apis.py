"""The exports REST API: asking for an export, listing and reading them, downloading files."""

import gzip
import json

import pytest

from exports.models import ExportSnapshot
from tests.exports.conftest import sha256

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/projects/alpha/exports/"


def detail_url(pk: int) -> str:
    return f"/api/v1/exports/{pk}/"


def download_url(pk: int, query: str = "split=train") -> str:
    return f"/api/v1/exports/{pk}/download?{query}"


def streamed(response) -> bytes:
    assert response.streaming, "downloads must stream, not build the body in memory"
    return b"".join(response.streaming_content)


# --- asking for an export -----------------------------------------------------------------


def test_create_queues_a_snapshot_and_sends_it_to_a_worker_after_commit(
    api_client_for, engineer, project, django_capture_on_commit_callbacks, mocker
):
    delay = mocker.patch("exports.tasks.build_export.delay")
    payload = {"kind": "preferences", "choices": {"min_agreement": 0.5, "seed": 3}}
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client_for(engineer).post(LIST_URL, payload, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    snapshot = ExportSnapshot.objects.get()
    delay.assert_called_once_with(snapshot.pk)
    assert body["id"] == snapshot.pk and body["state"] == "queued"
    assert body["url"] == f"http://testserver{detail_url(snapshot.pk)}" == response["Location"]
    assert body["project"] == "alpha" and body["kind"] == "preferences"
    assert body["choices"]["min_agreement"] == 0.5 and body["choices"]["seed"] == 3
    assert body["choices"]["validation"] == 0.05  # defaults filled in
    assert body["created_by"] == "eve" and body["progress"] is None
    assert body["manifest"] is None and body["downloads"] == {} and body["files"] == {}
    assert snapshot.created_by == engineer and snapshot.choices["min_agreement"] == 0.5


def test_asking_twice_while_queued_gives_the_same_export_and_once_done_a_new_one(
    api_client_for, engineer, lead, project
):
    payload = {"kind": "rankings", "choices": {"seed": 2}}
    api = api_client_for(engineer)
    first = api.post(LIST_URL, payload, format="json").json()
    assert api.post(LIST_URL, payload, format="json").json()["id"] == first["id"]
    assert api_client_for(lead).post(LIST_URL, payload, format="json").json()["id"] != first["id"]
    ExportSnapshot.objects.filter(pk=first["id"]).update(state=ExportSnapshot.State.FAILED)
    assert api.post(LIST_URL, payload, format="json").json()["id"] != first["id"]
    assert ExportSnapshot.objects.count() == 3


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "pairs"}, "kind"),
        ({}, "kind"),
        ({"kind": "preferences", "choices": {"min_agreement": 2}}, "choices.min_agreement"),
        ({"kind": "preferences", "choices": {"min_agreement": "high"}}, "choices.min_agreement"),
        ({"kind": "sft", "choices": {"min_agreement": 0.5}}, "choices.min_agreement"),
        ({"kind": "preferences", "choices": {"since": "yesterday"}}, "choices.since"),
        ({"kind": "preferences", "choices": {"bogus": 1}}, "choices.bogus"),
        ({"kind": "preferences", "choices": {"exclude_flags": ["rude"]}}, "choices.exclude_flags"),
        ({"kind": "preferences", "choices": {"exclude_annotators": ["nobody"]}},
         "choices.exclude_annotators"),
        ({"kind": "preferences", "choices": {"model_versions": ["gpt-99"]}},
         "choices.model_versions"),
        ({"kind": "preferences", "choices": {"validation": 0.6, "test": 0.5}}, "choices.test"),
        ({"kind": "preferences", "choices": [1, 2]}, "choices"),
    ],
)  # fmt: skip
def test_bad_kind_or_choices_are_400s_naming_the_field(api_client_for, engineer, payload, field):
    response = api_client_for(engineer).post(LIST_URL, payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert field in body, body
    assert all(isinstance(message, str) and message for message in body[field])
    assert not ExportSnapshot.objects.exists()


def test_an_unknown_flag_error_lists_the_projects_flags(api_client_for, engineer):
    payload = {"kind": "sft", "choices": {"exclude_flags": ["rude"]}}
    body = api_client_for(engineer).post(LIST_URL, payload, format="json").json()
    assert "harmful" in body["choices.exclude_flags"][0]


@pytest.mark.parametrize("raw", ['{"kind": "sft"', "[1, 2]", '"sft"', "null", "42", "\xff"])
def test_malformed_json_or_a_body_that_is_not_an_object_is_a_400(api_client_for, engineer, raw):
    response = api_client_for(engineer).generic(
        "POST", LIST_URL, raw.encode("latin-1"), content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert isinstance(response.json(), dict)
    assert not ExportSnapshot.objects.exists()


def test_the_list_is_paginated_and_newest_first(api_client_for, lead, queued_export):
    first, second, third = (queued_export(kind) for kind in ("sft", "prompts", "rankings"))
    response = api_client_for(lead).get(LIST_URL, {"limit": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3 and body["next"] and body["previous"] is None
    assert [item["id"] for item in body["results"]] == [third.pk, second.pk]
    assert body["results"][0]["kind"] == "rankings" and body["results"][0]["state"] == "queued"
    rest = api_client_for(lead).get(LIST_URL, {"limit": 2, "offset": 2}).json()
    assert [item["id"] for item in rest["results"]] == [first.pk]


def test_the_list_holds_only_this_projects_exports(api_client_for, engineer, queued_export):
    from tests.factories import MembershipFactory, ProjectFactory

    other = ProjectFactory(slug="beta")
    MembershipFactory(project=other, user=engineer, role="engineer")
    queued_export()
    assert api_client_for(engineer).get("/api/v1/projects/beta/exports/").json()["count"] == 0


# --- who may ------------------------------------------------------------------------------


def _endpoints(pk: int) -> list[tuple[str, str]]:
    return [
        ("get", LIST_URL),
        ("post", LIST_URL),
        ("get", detail_url(pk)),
        ("get", download_url(pk)),
        ("get", download_url(pk, "file=manifest.json")),
    ]


@pytest.mark.parametrize("who", ["trainer", "outsider", "anonymous"])
def test_trainers_get_403_and_outsiders_and_anonymous_404_on_every_endpoint(
    request, api_client_for, who, queued_export
):
    from rest_framework.test import APIClient

    snapshot = queued_export()
    client = APIClient() if who == "anonymous" else api_client_for(request.getfixturevalue(who))
    expected = 403 if who == "trainer" else 404
    for method, url in _endpoints(snapshot.pk):
        response = getattr(client, method)(url, {"kind": "sft"}, format="json")
        assert response.status_code == expected, (method, url, response.content)
    # Nobody learns about the snapshot, and nothing new was asked for.
    assert ExportSnapshot.objects.count() == 1


def test_a_missing_export_is_404(api_client_for, engineer):
    client = api_client_for(engineer)
    assert client.get(detail_url(999)).status_code == 404
    assert client.get(download_url(999)).status_code == 404


# --- a built export -----------------------------------------------------------------------


def test_detail_of_a_built_export_has_its_manifest_and_download_urls(
    api_client_for, lead, build_export
):
    snapshot = build_export("preferences", {"validation": 0.1, "test": 0.1, "seed": 3})
    body = api_client_for(lead).get(detail_url(snapshot.pk)).json()

    assert body["state"] == "done" and body["progress"] == 1.0 and body["error"] == ""
    assert body["attempts"] == 1 and body["created_by"] == "eve"
    assert body["created_at"] and body["started_at"] and body["finished_at"]
    manifest = body["manifest"]
    assert manifest["kind"] == "preferences" and manifest["snapshot_id"] == snapshot.pk
    assert set(manifest["splits"]) == {"train", "validation", "test"}
    assert body["rows_written"] == body["rows_expected"] == manifest["rows"] > 0
    assert sum(s["rows"] for s in manifest["splits"].values()) == manifest["rows"]
    assert body["downloads"] == {
        split: f"http://testserver{download_url(snapshot.pk, f'split={split}')}"
        for split in ("train", "validation", "test")
    }
    assert set(body["files"]) == {"manifest.json", "README.md"}


def test_download_streams_the_exact_bytes_of_the_manifest(api_client_for, engineer, build_export):
    snapshot = build_export("preferences")
    client = api_client_for(engineer)
    for split, entry in snapshot.manifest["splits"].items():
        response = client.get(download_url(snapshot.pk, f"split={split}"))
        assert response.status_code == 200
        assert response["Content-Type"] == "application/jsonl"
        assert response["Content-Disposition"] == (
            f'attachment; filename="alpha-preferences-{snapshot.pk}-{split}.jsonl"'
        )
        data = streamed(response)
        assert sha256(data) == entry["sha256"] and len(data) == entry["bytes"]
        assert int(response["Content-Length"]) == entry["bytes"]
        lines = data.decode().splitlines()
        assert len(lines) == entry["rows"]
        row = json.loads(lines[0])
        assert set(row) >= {"prompt", "chosen", "rejected", "meta"}


def test_a_gzip_export_downloads_as_gzip(api_client_for, engineer, build_export):
    snapshot = build_export("sft", {"gzip": True, "validation": 0})
    response = api_client_for(engineer).get(download_url(snapshot.pk))
    assert response["Content-Type"] == "application/gzip"
    assert "Content-Encoding" not in response  # the file itself is gzip: clients keep it as is
    assert response["Content-Disposition"].endswith(f'-sft-{snapshot.pk}-train.jsonl.gz"')
    data = streamed(response)
    assert sha256(data) == snapshot.manifest["splits"]["train"]["sha256"]
    rows = gzip.decompress(data).decode().splitlines()
    assert len(rows) == snapshot.manifest["rows"] and "messages" in json.loads(rows[0])


def test_manifest_and_readme_download(api_client_for, engineer, build_export):
    snapshot = build_export("prompts")
    client = api_client_for(engineer)
    manifest = client.get(download_url(snapshot.pk, "file=manifest.json"))
    assert manifest.status_code == 200 and manifest["Content-Type"] == "application/json"
    assert json.loads(streamed(manifest)) == snapshot.manifest
    readme = client.get(download_url(snapshot.pk, "file=README.md"))
    assert readme["Content-Type"].startswith("text/markdown")
    assert f'filename="alpha-prompts-{snapshot.pk}-README.md"' in readme["Content-Disposition"]
    assert b"configs:" in streamed(readme)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("split=holdout", "split"),
        ("", "split"),
        ("file=settings.py", "file"),
        ("file=../manifest.json", "file"),
        ("split=train&file=README.md", "file"),
    ],
)
def test_an_unknown_split_or_file_is_a_400_naming_it(
    api_client_for, engineer, build_export, query, field
):
    snapshot = build_export("prompts")
    response = api_client_for(engineer).get(download_url(snapshot.pk, query))
    assert response.status_code == 400
    assert field in response.json(), response.json()


def test_the_split_error_names_the_splits_there_are(api_client_for, engineer, build_export):
    snapshot = build_export("prompts")
    response = api_client_for(engineer).get(download_url(snapshot.pk, "split=test"))
    assert "train, validation" in response.json()["split"][0]


@pytest.mark.parametrize("state", ["queued", "running", "failed"])
def test_downloading_an_unfinished_export_is_a_409(api_client_for, engineer, queued_export, state):
    snapshot = queued_export()
    ExportSnapshot.objects.filter(pk=snapshot.pk).update(state=state, error="boom")
    response = api_client_for(engineer).get(download_url(snapshot.pk))
    assert response.status_code == 409
    body = response.json()
    assert body["state"] == state and str(snapshot.pk) in body["detail"]


def test_a_failed_export_shows_its_error(api_client_for, engineer, queued_export):
    snapshot = queued_export()
    ExportSnapshot.objects.filter(pk=snapshot.pk).update(state="failed", error="Disk full")
    body = api_client_for(engineer).get(detail_url(snapshot.pk)).json()
    assert body["state"] == "failed" and body["error"] == "Disk full"
    assert body["manifest"] is None and body["downloads"] == {}


def test_the_schema_still_builds_with_the_export_endpoints(api_client_for, engineer):
    response = api_client_for(engineer).get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert {"/api/v1/projects/{slug}/exports/", "/api/v1/exports/{id}/"} <= set(schema["paths"])
    create = schema["paths"]["/api/v1/projects/{slug}/exports/"]["post"]
    assert create["operationId"] == "export_create"
    choices = schema["components"]["schemas"]["ExportChoices"]["properties"]
    assert {"min_agreement", "pair_strategy", "length_balanced", "seed"} <= set(choices)
    download = schema["paths"]["/api/v1/exports/{id}/download"]["get"]
    assert "application/jsonl" in download["responses"]["200"]["content"]


@pytest.mark.parametrize("pk", [2**63, 2**64, 10**40])
def test_ids_beyond_64_bits_are_404(project, engineer, api_client_for, client, pk):
    api = api_client_for(engineer)
    assert api.get(f"/api/v1/exports/{pk}/").status_code == 404
    assert api.get(f"/api/v1/exports/{pk}/download?split=train").status_code == 404
    client.force_login(engineer)
    assert client.get(f"/p/{project.slug}/exports/{pk}/").status_code == 404
    assert client.get(f"/p/{project.slug}/exports/{pk}/download?split=train").status_code == 404
