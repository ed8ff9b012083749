"""`manage.py make_tiny_model PATH`: build, check and register the tiny local models."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from annotations.model_versions import project_use_model
from annotations.models import ModelVersion, Project
from trainer_bridge.services import model_version_register
from trainer_bridge.tiny_model import (
    MARKER_FILE,
    TinyModelPaths,
    build_tiny_model,
    tiny_model_info,
)

SAMPLE_PROMPT = "Hello! How do I fix an old bicycle?"
SAMPLE_TOKENS = 24


class Command(BaseCommand):
    help = (
        "Build the tiny local policy and reward model into PATH (unless it already holds them), "
        "load them back as a check, and register them as <prefix>-policy and <prefix>-reward."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="Directory to build into; policy/ and reward/ go inside.")
        parser.add_argument("--seed", type=int, default=0, help="Seed for corpus and weights.")
        parser.add_argument(
            "--project", help="Slug of a project to draft with the policy (and sample candidates)."
        )
        parser.add_argument(
            "--keep-chosen",
            action="store_true",
            help="With --project: leave a project that already has a draft model as it is (a lead "
            "chose its models); `make run` passes this on every start.",
        )
        parser.add_argument("--name-prefix", default="tiny", help="ModelVersion name prefix.")
        parser.add_argument(
            "--force", action="store_true", help="Rebuild even if PATH already holds a model."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"]).expanduser().resolve()
        seed: int = options["seed"]
        prefix: str = options["name_prefix"]
        force: bool = options["force"]

        # Check every argument before the build, which takes seconds.
        if seed < 0:
            raise CommandError("--seed must be zero or more.")
        if path.exists() and not path.is_dir():
            raise CommandError(f"{path} exists and is not a directory.")
        names = {"policy": f"{prefix}-policy", "reward": f"{prefix}-reward"}
        for name in names.values():
            try:
                ModelVersion._meta.get_field("name").run_validators(name)
            except ValidationError as exc:
                raise CommandError(
                    f"--name-prefix {prefix!r} gives an invalid name {name!r}."
                ) from exc
        project = None
        if options["project"]:
            project = Project.objects.filter(slug=options["project"]).first()
            if project is None:
                raise CommandError(f"No project with slug {options['project']!r}.")

        paths = TinyModelPaths(policy=path / "policy", reward=path / "reward")
        if self._needs_build(paths, seed=seed, force=force):
            self.stdout.write(f"Building the tiny model (seed {seed}) into {path} ...")
            started = time.monotonic()
            paths = build_tiny_model(path, seed=seed)
            self.stdout.write(f"Built in {time.monotonic() - started:.1f} s.")
        else:
            self.stdout.write(f"{path} already holds the tiny model (seed {seed}); not rebuilding.")

        sample, reward_score = self._check_loads(paths)

        try:
            with transaction.atomic():
                policy = model_version_register(
                    name=names["policy"],
                    source=str(paths.policy),
                    kind=ModelVersion.Kind.POLICY,
                    notes=_notes(paths.policy),
                )
                reward = model_version_register(
                    name=names["reward"],
                    source=str(paths.reward),
                    kind=ModelVersion.Kind.REWARD,
                    # The reward model starts from the policy's trunk.
                    parent=policy,
                    notes=_notes(paths.reward),
                )
                keep = (
                    project is not None
                    and options["keep_chosen"]
                    and project.draft_model_id not in (None, policy.pk)
                )
                if project is not None and not keep:
                    project_use_model(project=project, model_version=policy)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc

        for model_version, directory in ((policy, paths.policy), (reward, paths.reward)):
            info = tiny_model_info(directory) or {}
            self.stdout.write(
                f"{model_version.kind:<6} {model_version.name}: {directory} "
                f"({info.get('parameters', '?')} parameters)"
            )
        self.stdout.write(f"Sample reply to {SAMPLE_PROMPT!r}: {sample!r}")
        self.stdout.write(f"Reward for that reply: {reward_score:.4f}")
        if project is not None and keep:
            self.stdout.write(
                f"Project {project.slug} keeps its models (drafts with {project.draft_model}); "
                "not changed."
            )
        elif project is not None:
            self.stdout.write(f"Project {project.slug} now drafts with {policy.name}.")
        self.stdout.write(self.style.SUCCESS("Tiny model ready."))

    def _needs_build(self, paths: TinyModelPaths, *, seed: int, force: bool) -> bool:
        if force:
            return True
        infos = [tiny_model_info(paths.policy), tiny_model_info(paths.reward)]
        if all(infos):
            seeds = {info.get("seed") for info in infos}
            if seeds == {seed}:
                return False
            raise CommandError(
                f"{paths.policy.parent} holds a tiny model built with seed "
                f"{', '.join(map(str, sorted(seeds, key=str)))}, not {seed}; "
                "pass --force to rebuild it."
            )
        # Only what an earlier (interrupted) build left may be replaced without --force.
        for directory in (paths.policy, paths.reward):
            if directory.exists() and not _is_ours_or_empty(directory):
                raise CommandError(
                    f"{directory} exists and is not a tiny model; pass --force to replace it."
                )
        return True

    def _check_loads(self, paths: TinyModelPaths) -> tuple[str, float]:
        import torch

        from trainer_bridge.loading import (
            load_policy,
            load_reward_model,
            quiet_progress_bars,
        )

        messages = [{"role": "user", "content": SAMPLE_PROMPT}]
        with quiet_progress_bars(), torch.inference_mode():
            tokenizer, policy = load_policy(str(paths.policy))
            inputs = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            output = policy.generate(**inputs, do_sample=False, max_new_tokens=SAMPLE_TOKENS)
            new_tokens = output[0, inputs["input_ids"].shape[1] :]
            if len(new_tokens) == 0:
                raise CommandError(f"The policy in {paths.policy} generated nothing.")
            sample = tokenizer.decode(new_tokens, skip_special_tokens=True)

            reward_tokenizer, reward_model = load_reward_model(str(paths.reward))
            scored = reward_tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": sample}],
                return_tensors="pt",
                return_dict=True,
            )
            logits = reward_model(**scored).logits
            if tuple(logits.shape) != (1, 1):
                raise CommandError(f"The reward model gave logits of shape {tuple(logits.shape)}.")
        return sample, float(logits[0, 0])


def _is_ours_or_empty(directory: Path) -> bool:
    if not directory.is_dir():
        return False
    return (directory / MARKER_FILE).is_file() or not any(directory.iterdir())


def _notes(directory: Path) -> str:
    info = tiny_model_info(directory) or {}
    return (
        f"Tiny local {info.get('kind', 'model')} built by make_tiny_model "
        f"(seed {info.get('seed')}, {info.get('parameters')} parameters); for tests and demos."
    )
