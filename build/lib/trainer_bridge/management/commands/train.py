"""`manage.py train --project SLUG --stage rm --snapshot ID --base NAME`: start a training run."""

from __future__ import annotations

import json
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotations.models import Project
from trainer_bridge.models import TrainingRun
from trainer_bridge.training.hyperparameters import STAGES
from trainer_bridge.training_runs import training_run_start
from trainer_bridge.training_selectors import latest_metrics


def parse_setting(text: str) -> tuple[str, Any]:
    """`key=value`, the value read as JSON where it is JSON (`1e-5`, `3`, `true`, `"k3"`) and
    as text otherwise (`k3`)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise CommandError(f"--set {text!r}: write it as key=value.")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


class Command(BaseCommand):
    help = (
        "Start a training run (sft, rm or ppo) on the project's snapshots; with --wait, follow "
        "it to its end and exit non-zero unless it succeeds. Every input is checked first; a bad "
        "one exits naming it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="The project's slug.")
        parser.add_argument("--stage", required=True, choices=STAGES)
        parser.add_argument(
            "--snapshot",
            dest="snapshots",
            action="append",
            required=True,
            type=int,
            help="A snapshot id (repeat for several).",
        )
        parser.add_argument("--base", required=True, help="Name of the policy to start from.")
        parser.add_argument("--reward-model", help="ppo: the reward model's name.")
        parser.add_argument(
            "--set",
            dest="hyperparameter_settings",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="A hyper-parameter (repeat), e.g. --set learning_rate=1e-5 --set epochs=2.",
        )
        parser.add_argument("--backend", choices=TrainingRun.Backend.values)
        parser.add_argument(
            "--user", help="Start it as this member (must be an engineer or a lead)."
        )
        parser.add_argument("--wait", action="store_true", help="Follow the run to its end.")
        parser.add_argument(
            "--poll-seconds", type=float, default=2.0, help="With --wait: how often to look."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["project"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['project']!r}.")
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user {options['user']!r}.")
        hyperparameters = dict(parse_setting(text) for text in options["hyperparameter_settings"])
        try:
            run = training_run_start(
                project=project,
                user=user,
                stage=options["stage"],
                snapshots=options["snapshots"],
                base_model=options["base"],
                reward_model=options["reward_model"],
                hyperparameters=hyperparameters,
                backend=options["backend"],
            )
        except ValidationError as exc:
            problems = [
                f"{_option(field)}: {message}"
                for field, messages in exc.message_dict.items()
                for message in messages
            ]
            raise CommandError("\n".join(problems)) from exc
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Training run {run.pk} ({run.stage}, {run.backend}) is queued: "
            f"{', '.join(f'{k}={v}' for k, v in run.hyperparameters.items())}"
        )
        if options["wait"]:
            self._follow(run.pk, options["poll_seconds"])

    def _follow(self, run_id: int, poll: float) -> None:
        seen = ""
        while True:
            run = TrainingRun.objects.select_related("result_model").get(pk=run_id)
            latest = latest_metrics(run)
            line = f"{run.state}" + "".join(
                f" {name}={point['value']:.4g}@{point['step']}" for name, point in latest.items()
            )
            if line != seen:
                self.stdout.write(line)
                seen = line
            if run.is_finished:
                break
            time.sleep(poll)
        if run.state != TrainingRun.State.SUCCEEDED:
            tail = "\n".join(run.log_tail.splitlines()[-20:])
            raise CommandError(f"Run {run.pk} {run.state}: {run.error or 'no reason'}\n{tail}")
        self.stdout.write(
            self.style.SUCCESS(f"Run {run.pk} succeeded: model version {run.result_model}.")
        )


def _option(field: str) -> str:
    """The command-line spelling of a service field."""
    if field.startswith("hyperparameters."):
        return f"--set {field.split('.', 1)[1]}"
    return {
        "snapshots": "--snapshot",
        "base_model": "--base",
        "reward_model": "--reward-model",
    }.get(field, f"--{field.replace('_', '-')}")
