"""The training pages: the runs list, the start form (defaults shown, errors on their fields),
the live run page (state, log, chart data, polling while it runs), cancel, use and evaluate."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import ModelVersionFactory, ProjectFactory
from tests.trainer_bridge.conftest import finished_rm_run
from trainer_bridge.models import RewardEvaluation, TrainingMetric, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def preferences(signal_data, snapshot_of):
    signal_data(sets=3, prompts=20)
    return snapshot_of("preferences")


def logged_in(client, user):
    client.force_login(user)
    return client


def test_pages_are_for_engineers_and_leads(client, project, engineer, lead, trainer, outsider):
    run = TrainingRun.objects.create(
        project=project, stage="sft", base_model=ModelVersionFactory(name="p")
    )
    urls = ["/p/alpha/training/", "/p/alpha/training/new", f"/p/alpha/training/{run.pk}/"]
    anonymous = client.get(urls[0])
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    for user, status in [(engineer, 200), (lead, 200), (trainer, 403), (outsider, 404)]:
        c = logged_in(Client(), user)
        for url in urls:
            assert c.get(url).status_code == status, (user, url)
    other = ProjectFactory(slug="bravo")
    for url in [f"/p/alpha/training/{run.pk}/cancel", f"/p/alpha/training/{run.pk}/use"]:
        assert logged_in(Client(), trainer).post(url).status_code == 403
        assert logged_in(Client(), outsider).post(url).status_code == 404
    # A run is found only under its own project's address.
    from tests.factories import MembershipFactory

    MembershipFactory(project=other, user=engineer, role="engineer")
    assert logged_in(Client(), engineer).get(f"/p/bravo/training/{run.pk}/").status_code == 404
    page = logged_in(Client(), engineer).get("/p/alpha/").content.decode()
    assert 'href="/p/alpha/training/"' in page
    assert (
        'href="/p/alpha/training/"'
        not in logged_in(Client(), trainer).get("/p/alpha/").content.decode()
    )


def test_the_form_shows_the_stage_defaults_and_changes_with_the_stage(
    client, engineer, preferences
):
    c = logged_in(client, engineer)
    page = c.get("/p/alpha/training/new").content.decode()
    assert 'name="hp_center_rewards_coefficient"' in page and 'value="1e-05"' in page
    assert f'value="{preferences.pk}"' in page and "preferences: " in page
    assert 'name="hp_kl_coef"' not in page

    fragment = c.get(
        "/p/alpha/training/new?stage=ppo&base_model=tiny-policy", HTTP_HX_REQUEST="true"
    )
    body = fragment.content.decode()
    assert "<html" not in body and 'id="training-run-form"' in body
    assert 'name="hp_kl_coef"' in body and 'name="reward_model"' in body
    assert 'name="hp_center_rewards_coefficient"' not in body


def test_starting_a_run_from_the_form(client, engineer, preferences, sent):
    response = logged_in(client, engineer).post(
        "/p/alpha/training/new",
        {
            "stage": "rm", "snapshots": [str(preferences.pk)], "base_model": "tiny-policy",
            "backend": "local", "hp_learning_rate": "0.001", "hp_epochs": "2",
            "hp_precision": "auto",
        },
    )  # fmt: skip
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/p/alpha/training/{run.pk}/"
    assert run.hyperparameters["learning_rate"] == 0.001 and run.hyperparameters["epochs"] == 2
    assert run.hyperparameters["batch_size"] == 8  # left empty: the default


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"hp_learning_rate": "7"}, "hp_learning_rate", "greater than 0"),
        ({"hp_warmup_ratio": "0.9"}, "hp_warmup_ratio", "from 0 to 0.5"),
        ({"base_model": "nobody"}, "base_model", "Select a valid choice"),
        ({"stage": "ppo", "reward_model": ""}, "reward_model", "needs one"),
    ],
)
def test_a_bad_value_is_shown_on_its_field_and_nothing_starts(
    change, field, words, client, engineer, preferences, sent
):
    data = {
        "stage": "rm", "snapshots": [str(preferences.pk)], "base_model": "tiny-policy",
        "backend": "local", "hp_precision": "auto", "hp_kl_estimator": "k1", **change,
    }  # fmt: skip
    response = logged_in(client, engineer).post("/p/alpha/training/new", data)
    assert response.status_code == 200
    form = response.context["form"]
    assert field in form.errors and words in " ".join(form.errors[field]), form.errors
    assert not TrainingRun.objects.exists()
    sent.assert_not_called()


def test_a_snapshot_of_the_wrong_kind_is_refused_with_the_reason(
    client, engineer, preferences, snapshot_of, sent
):
    prompts = snapshot_of("prompts")
    response = logged_in(client, engineer).post(
        "/p/alpha/training/new",
        {"stage": "rm", "snapshots": [str(prompts.pk)], "base_model": "tiny-policy",
         "backend": "local", "hp_precision": "auto"},
    )  # fmt: skip
    errors = response.context["form"].errors["snapshots"]
    assert "the rm stage trains on preferences snapshots" in " ".join(errors)
    assert not TrainingRun.objects.exists()


def test_the_form_needs_the_csrf_token(engineer, preferences, sent):
    c = Client(enforce_csrf_checks=True)
    c.force_login(engineer)
    response = c.post("/p/alpha/training/new", {"stage": "rm", "snapshots": [preferences.pk]})
    assert response.status_code == 403 and not TrainingRun.objects.exists()


def test_the_run_page_follows_a_running_run_and_stops_polling_when_it_ends(
    client, engineer, project
):
    run = TrainingRun.objects.create(
        project=project, stage="rm", base_model=ModelVersionFactory(name="p"), state="running",
        attempts=1, log_tail="step 1 <script>alert('x')</script>\n",
        rows={"train": 90, "validation": 10, "dropped_too_long": 3},
    )  # fmt: skip
    for step in range(0, 30, 10):
        TrainingMetric.objects.create(run=run, step=step, values={"loss": 1 - step / 100})
    c = logged_in(client, engineer)
    page = c.get(f"/p/alpha/training/{run.pk}/").content.decode()
    assert "vendor/chart.js/chart.umd.min.js" in page and "js/training.js" in page
    assert 'id="run-charts"' in page and 'id="run-series"' in page
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert '"steps": [0, 10, 20]' in page and "3 rows longer than max_length were dropped" in page
    assert "Cancel the run" in page

    live = c.get(f"/p/alpha/training/{run.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in live and 'hx-trigger="every 2s"' in live
    TrainingRun.objects.filter(pk=run.pk).update(state="failed", error="exit status 1")
    live = c.get(f"/p/alpha/training/{run.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in live and "exit status 1" in live and "Cancel the run" not in live


def test_cancel_from_the_page(client, engineer, project):
    run = TrainingRun.objects.create(project=project, stage="sft", base_model=ModelVersionFactory())
    response = logged_in(client, engineer).post(f"/p/alpha/training/{run.pk}/cancel")
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.state == "cancelled" and "Cancelled by eve" in run.log_tail


def test_leads_put_a_trained_policy_to_use_with_one_click(client, lead, engineer, project):
    base = ModelVersionFactory(name="base")
    trained = ModelVersionFactory(name="alpha-sft-run-1", parent=base)
    project.candidate_models.add(base)
    run = TrainingRun.objects.create(
        project=project, stage="sft", base_model=base, state="succeeded", result_model=trained
    )
    engineer_page = (
        logged_in(Client(), engineer).get(f"/p/alpha/training/{run.pk}/").content.decode()
    )
    assert "Use as draft model" not in engineer_page and "A lead of" in engineer_page
    c = logged_in(client, lead)
    page = c.get(f"/p/alpha/training/{run.pk}/").content.decode()
    assert "Use as draft model" in page and "Use as candidate model" in page
    assert "csrfmiddlewaretoken" in page

    assert c.post(f"/p/alpha/training/{run.pk}/use", {"use": "candidate"}).status_code == 302
    project.refresh_from_db()
    assert list(project.candidate_models.all()) == [trained]
    c.post(f"/p/alpha/training/{run.pk}/use", {"use": "draft"})
    project.refresh_from_db()
    assert project.draft_model == trained
    assert (
        logged_in(Client(), engineer)
        .post(f"/p/alpha/training/{run.pk}/use", {"use": "draft"})
        .status_code
        == 403
    )


def test_a_reward_model_run_shows_its_evaluation_per_round(client, engineer, project, mocker):
    delay = mocker.patch("trainer_bridge.tasks.train_evaluate_reward.delay")
    policy = ModelVersionFactory(name="policy")
    reward = ModelVersionFactory(name="alpha-rm-run-1", kind="reward")
    run = finished_rm_run(project, reward, policy)
    RewardEvaluation.objects.create(
        project=project, reward_model=reward, state="done", sets=30, pairs=120, correct=108,
        sets_left_out=100,
        rounds=[
            {"round": "policy", "sets": 20, "pairs": 80, "correct": 76, "accuracy": 0.95},
            {"round": "policy + alpha-ppo-run-2", "sets": 10, "pairs": 40, "correct": 32,
             "accuracy": 0.8},
        ],
    )  # fmt: skip
    c = logged_in(client, engineer)
    page = c.get(f"/p/alpha/training/{run.pk}/").content.decode()
    assert "Against fresh human rankings" in page and "0.900" in page
    assert "policy + alpha-ppo-run-2" in page and "0.800" in page and "100 sets left out" in page

    c.post(f"/p/alpha/training/{run.pk}/evaluate")
    queued = RewardEvaluation.objects.filter(state="queued").get()
    assert queued.reward_model == reward and queued.requested_by == engineer
    live = c.get(f"/p/alpha/training/{run.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in live  # polls until the evaluation is done
    assert delay.call_count == 0  # sent only after the commit, which a test never reaches
