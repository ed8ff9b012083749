"""Training runs (SFT, reward model, PPO) with their per-step metrics, and evaluations of reward
models against fresh human rankings."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotations", "0008_generation_requests_leave_for_trainer_bridge"),
        ("exports", "0001_snapshots"),
        ("trainer_bridge", "0003_generation_request_table"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="TrainingRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "stage",
                    models.CharField(
                        choices=[
                            ("sft", "Supervised fine-tuning (SFT)"),
                            ("rm", "Reward model (RM)"),
                            ("ppo", "Policy optimisation (PPO)"),
                        ],
                        max_length=8,
                    ),
                ),
                ("hyperparameters", models.JSONField(default=dict)),
                (
                    "backend",
                    models.CharField(
                        choices=[
                            ("local", "Local (accelerate launch on a train worker)"),
                            ("command", "Command (a cluster job template)"),
                        ],
                        default="local",
                        max_length=16,
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("succeeded", "Succeeded"),
                            ("failed", "Failed"),
                            ("cancelled", "Cancelled"),
                        ],
                        db_index=True,
                        default="queued",
                        max_length=16,
                    ),
                ),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("error", models.TextField(blank=True)),
                (
                    "log_tail",
                    models.TextField(blank=True, help_text="The last lines of the run's log."),
                ),
                (
                    "rows",
                    models.JSONField(
                        blank=True,
                        default=dict,
                        help_text="Rows the trainer read: train, validation, dropped.",
                    ),
                ),
                (
                    "summary",
                    models.JSONField(
                        blank=True, default=dict, help_text="Final figures the trainer reported."
                    ),
                ),
                (
                    "result_folder",
                    models.CharField(
                        blank=True, help_text="Storage path of the stored model.", max_length=300
                    ),
                ),
                (
                    "token_hash",
                    models.CharField(
                        blank=True,
                        help_text="sha256 of the current attempt's run token (a command job reports with it).",
                        max_length=64,
                    ),
                ),
                ("worker", models.CharField(blank=True, max_length=200)),
                (
                    "external_id",
                    models.CharField(
                        blank=True,
                        help_text="What the submit command printed (a job id).",
                        max_length=500,
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "queued_at",
                    models.DateTimeField(
                        auto_now_add=True,
                        help_text="When it was last queued (created, or requeued).",
                    ),
                ),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                (
                    "heartbeat_at",
                    models.DateTimeField(
                        blank=True,
                        help_text="Last sign of life of the worker or job running it.",
                        null=True,
                    ),
                ),
                (
                    "finish_reported_at",
                    models.DateTimeField(
                        blank=True,
                        help_text="When the trainer reported success; the model is being stored from then on.",
                        null=True,
                    ),
                ),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "base_model",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="training_runs_from",
                        to="annotations.modelversion",
                    ),
                ),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="training_runs",
                        to="annotations.project",
                    ),
                ),
                (
                    "result_model",
                    models.OneToOneField(
                        blank=True,
                        help_text="The model this run trained, once stored and registered.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="training_run",
                        to="annotations.modelversion",
                    ),
                ),
                (
                    "reward_model",
                    models.ForeignKey(
                        blank=True,
                        help_text="PPO only: the reward model the policy is tuned against.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="training_runs_rewarded",
                        to="annotations.modelversion",
                    ),
                ),
                (
                    "snapshots",
                    models.ManyToManyField(
                        help_text="The snapshots it trains on (their train splits; validation splits to evaluate).",
                        related_name="training_runs",
                        to="exports.exportsnapshot",
                    ),
                ),
                (
                    "started_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="training_runs",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
            },
        ),
        migrations.CreateModel(
            name="TrainingMetric",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("step", models.PositiveIntegerField()),
                ("values", models.JSONField(default=dict)),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="metrics",
                        to="trainer_bridge.trainingrun",
                    ),
                ),
            ],
            options={
                "ordering": ["run", "step"],
            },
        ),
        migrations.CreateModel(
            name="RewardEvaluation",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("done", "Done"),
                            ("failed", "Failed"),
                        ],
                        default="queued",
                        max_length=16,
                    ),
                ),
                ("sets", models.PositiveIntegerField(default=0)),
                ("pairs", models.PositiveIntegerField(default=0)),
                ("correct", models.PositiveIntegerField(default=0)),
                (
                    "sets_left_out",
                    models.PositiveIntegerField(
                        default=0,
                        help_text="Complete sets left out because a training snapshot held them.",
                    ),
                ),
                ("rounds", models.JSONField(blank=True, default=list)),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="reward_evaluations",
                        to="annotations.project",
                    ),
                ),
                (
                    "requested_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "reward_model",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="reward_evaluations",
                        to="annotations.modelversion",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(
                        fields=["reward_model", "-created_at"],
                        name="trainer_bri_reward__d3fd1d_idx",
                    )
                ],
            },
        ),
        migrations.AddIndex(
            model_name="trainingrun",
            index=models.Index(
                fields=["project", "-created_at"], name="trainer_bri_project_aa44ba_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="trainingrun",
            index=models.Index(
                fields=["state", "heartbeat_at"], name="trainer_bri_state_0b79ba_idx"
            ),
        ),
        migrations.AddConstraint(
            model_name="trainingrun",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("stage", "ppo"), ("reward_model__isnull", True), _connector="OR"
                ),
                name="training_reward_model_only_for_ppo",
            ),
        ),
        migrations.AddConstraint(
            model_name="trainingrun",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("stage", "ppo"), _negated=True),
                    ("reward_model__isnull", False),
                    _connector="OR",
                ),
                name="training_ppo_has_reward_model",
            ),
        ),
        migrations.AddConstraint(
            model_name="trainingrun",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("state", "succeeded"), _negated=True),
                    ("result_model__isnull", False),
                    _connector="OR",
                ),
                name="training_succeeded_has_model",
            ),
        ),
        migrations.AddConstraint(
            model_name="trainingmetric",
            constraint=models.UniqueConstraint(
                fields=("run", "step"), name="training_metric_once_per_step"
            ),
        ),
    ]
