"""A training run's page in Chromium under the production Content-Security-Policy: the vendored
Chart.js draws one chart per metric, the charts grow as the run reports steps (htmx polling, no
reload), and the cancel button (a CSRF-protected POST) stops the run; the start form swaps in
the chosen stage's hyper-parameters."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SCREENSHOT_DIR, log_in
from tests.factories import MembershipFactory, ModelVersionFactory, ProjectFactory, UserFactory
from trainer_bridge.models import TrainingMetric, TrainingRun

pytestmark = pytest.mark.browser


def _points(page, metric: str) -> int:
    return page.evaluate(
        """(metric) => {
            const canvas = document.querySelector(`figure[data-metric="${metric}"] canvas`);
            const chart = canvas && window.Chart.getChart(canvas);
            return chart ? chart.data.datasets[0].data.length : -1;
        }""",
        metric,
    )


def test_the_run_page_charts_metrics_live_and_cancels(page, transactional_db):
    project = ProjectFactory(slug="alpha", name="Alpha")
    MembershipFactory(project=project, user=UserFactory(username="eve"), role="engineer")
    run = TrainingRun.objects.create(
        project=project,
        stage="rm",
        base_model=ModelVersionFactory(name="tiny-policy"),
        state="running",
        attempts=1,
        rows={"train": 400, "validation": 97, "dropped_too_long": 2},
        log_tail="Training started: rows 400 train, 97 validation, 2 dropped too long.\n",
    )
    for step in (0, 10, 20):
        TrainingMetric.objects.create(
            run=run, step=step, values={"loss": 0.7 - step / 100, "accuracy": 0.5 + step / 50}
        )
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    log_in(page, "eve", "pw-for-tests")
    page.goto(f"/p/alpha/training/{run.pk}/")
    expect(page.locator("figure[data-metric='loss'] canvas")).to_be_visible()
    expect(page.locator("figure[data-metric='accuracy'] canvas")).to_be_visible()
    assert _points(page, "loss") == 3 and _points(page, "accuracy") == 3

    # The run reports two more steps: the charts follow without a reload.
    TrainingMetric.objects.create(run=run, step=30, values={"loss": 0.3, "accuracy": 1.0})
    TrainingMetric.objects.create(run=run, step=40, values={"loss": 0.25, "kl": 0.1})
    page.wait_for_function(
        "() => window.Chart.getChart(document.querySelector("
        "'figure[data-metric=\"loss\"] canvas')).data.datasets[0].data.length === 5",
        timeout=15_000,
    )
    expect(page.locator("figure[data-metric='kl'] canvas")).to_be_visible()
    expect(page.locator("tr[data-metric='loss'] td").first).to_have_text("0.2500")
    page.screenshot(path=str(SCREENSHOT_DIR / "screenshot-training.png"), full_page=True)

    page.get_by_role("button", name="Cancel the run").click()
    expect(page.locator("#run-live")).to_have_attribute("data-state", "cancelled")
    run.refresh_from_db()
    assert run.state == "cancelled" and "Cancelled by eve" in run.log_tail
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors

    # The start form: choosing PPO swaps in PPO's hyper-parameters with their defaults.
    page.goto("/p/alpha/training/new")
    expect(page.locator("[data-field='hp_center_rewards_coefficient']")).to_be_visible()
    page.get_by_label("Stage").select_option("ppo")
    expect(page.locator("[data-field='hp_kl_coef'] input")).to_have_value("0.05")
    expect(page.locator("[data-field='hp_center_rewards_coefficient']")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOT_DIR / "screenshot-training-new.png"), full_page=True)
