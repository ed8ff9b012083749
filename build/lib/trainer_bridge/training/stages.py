"""The SFT, reward-model and PPO stages on TRL: the one module that touches TRL's trainers.

TRL is pinned to its 1.12 line, the last with PPO (`trl.experimental.ppo`); a later TRL is
swapped in here. Every stage renders rows through `tokens.Renderer`, drops rows longer than
`max_length` itself and counts them (TRL's reward trainer drops them without a word), reports
metrics through `EventsCallback`, and saves the model, the tokenizer (left padding) and the
record of `checkpoints`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer_bridge.training.checkpoints import (
    load_causal_lm,
    load_scorer,
    load_tokenizer,
    save_tokenizer,
    write_record,
)
from trainer_bridge.training.data import (
    Demonstration,
    Example,
    Preference,
    Prompt,
)
from trainer_bridge.training.events import EventSink, is_main_process
from trainer_bridge.training.hyperparameters import (
    Hyperparameters,
    PPOHyperparameters,
    RewardHyperparameters,
    SFTHyperparameters,
)
from trainer_bridge.training.reward_eval import policy_rewards, score_sequences
from trainer_bridge.training.tokens import Renderer

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase, TrainerCallback

# How TRL's log keys are reported in metrics events (keys a stage lacks are left out).
METRIC_NAMES = {
    # SFT and reward model, training
    "loss": "loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "mean_token_accuracy": "token_accuracy",
    "accuracy": "train_accuracy",
    "margin": "margin",
    # evaluation on the validation split
    "eval_loss": "validation_loss",
    "eval_accuracy": "accuracy",
    "eval_margin": "validation_margin",
    "eval_mean_token_accuracy": "validation_token_accuracy",
    # PPO
    "objective/scores": "reward",
    "objective/kl": "kl",
    "objective/rlhf_reward": "rlhf_reward",
    "objective/entropy": "entropy",
    "loss/policy_avg": "loss",
    "loss/value_avg": "value_loss",
    "lr": "learning_rate",
}
# Held-out replies sampled per validation prompt when PPO compares the policy before and after.
HELD_OUT_SAMPLES = 4
HELD_OUT_PROMPTS = 64


class StageError(RuntimeError):
    """The stage cannot run with these inputs; the message says why."""


@dataclass(frozen=True)
class StageInputs:
    stage: str
    train: list[Example]
    validation: list[Example]
    base: str
    output: Path
    hyperparameters: Hyperparameters
    reward_model: str | None = None


def run_stage(inputs: StageInputs, sink: EventSink) -> dict[str, Any]:
    """Train, save into `inputs.output` and return the summary of the finished event."""
    import datasets
    import torch
    from transformers.utils import logging as transformers_logging

    # Progress bars fill a captured log with carriage returns; the metrics events say more.
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    runners = {"sft": _run_sft, "rm": _run_reward_model, "ppo": _run_ppo}
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.monotonic()
    summary = runners[inputs.stage](inputs, sink)
    summary["runtime_seconds"] = round(time.monotonic() - started, 2)
    if cuda:
        gib = 2**30
        summary["peak_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated() / gib, 2)
        summary["peak_memory_reserved_gib"] = round(torch.cuda.max_memory_reserved() / gib, 2)
    return summary


def _announce(sink: EventSink, stage: str, rows: dict[str, int]) -> None:
    """The started event, then a log line saying where and with what the stage runs."""
    import torch

    sink.started(stage, rows)
    device = f"cuda: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu"
    sink.log(
        f"{stage} stage on {device}; torch {torch.__version__}, "
        f"transformers {_version('transformers')}, trl {_version('trl')}, "
        f"datasets {_version('datasets')}"
    )


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _speed(callback, train_seconds: float, steps: int) -> dict[str, Any]:
    """Optimizer steps per second: between the first and the last training log (so start-up and
    the first step's warm-up are left out) when there are two, else over the whole training."""
    clock = callback.clock
    if len(clock) >= 2 and clock[-1][0] > clock[0][0]:
        per_second = (clock[-1][0] - clock[0][0]) / (clock[-1][1] - clock[0][1])
    else:
        per_second = steps / train_seconds if train_seconds else None
    return {"train_seconds": round(train_seconds, 2), "steps_per_second": per_second}


# --- shared pieces ----------------------------------------------------------------------------


def _events_callback(sink: EventSink, *, every: int = 1) -> TrainerCallback:
    from transformers import TrainerCallback

    class EventsCallback(TrainerCallback):
        """Turns the trainer's logs into metrics events (main process only)."""

        def __init__(self) -> None:
            self.history: list[tuple[int, dict[str, float]]] = []
            # (step, time) of each training log, for the steps per second of the summary.
            self.clock: list[tuple[int, float]] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            # The last log of a run sums it up ("train_runtime", mean loss): not a step's figures.
            if not logs or not state.is_world_process_zero or "train_runtime" in logs:
                return
            values = {
                name: float(logs[key])
                for key, name in METRIC_NAMES.items()
                if isinstance(logs.get(key), int | float) and not isinstance(logs[key], bool)
            }
            if not values:
                return
            self.history.append((state.global_step, values))
            if "loss" in values:
                self.clock.append((state.global_step, time.monotonic()))
            step = state.global_step
            if every > 1 and step % every and step not in (1, state.max_steps):
                return
            sink.metrics(step, values)

    return EventsCallback()


def _precision(precision: str) -> str:
    import torch

    if precision == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bfloat16"
        return "float32"
    return precision


def _training_argument_names() -> set[str]:
    from transformers import TrainingArguments

    return {spec.name for spec in dataclasses.fields(TrainingArguments)}


def _checkpointing_argument() -> str:
    """Recent transformers renamed `gradient_checkpointing` (TRL defaults it to on)."""
    if "activation_checkpointing" in _training_argument_names():
        return "activation_checkpointing"
    return "gradient_checkpointing"


def _warmup_argument(ratio: float) -> dict[str, float]:
    """Recent transformers read a `warmup_steps` below 1 as a share of the steps and dropped
    `warmup_ratio`; older ones have both, and take `warmup_steps` as a count."""
    if "warmup_ratio" in _training_argument_names():
        return {"warmup_ratio": ratio}
    return {"warmup_steps": ratio}


def _common_args(hp: Hyperparameters, scratch: Path) -> dict[str, Any]:
    import torch

    precision = _precision(hp.precision)
    # transformers takes half precision without a GPU only when told the CPU is meant.
    cpu_half = precision != "float32" and not torch.cuda.is_available()
    return {
        **({"use_cpu": True} if cpu_half else {}),
        "output_dir": str(scratch),
        "per_device_train_batch_size": hp.batch_size,
        "per_device_eval_batch_size": hp.batch_size,
        "gradient_accumulation_steps": hp.gradient_accumulation_steps,
        "learning_rate": hp.learning_rate,
        "seed": hp.seed,
        "data_seed": hp.seed,
        "logging_strategy": "steps",
        "logging_steps": hp.logging_steps,
        "save_strategy": "no",
        "report_to": "none",
        _checkpointing_argument(): hp.gradient_checkpointing,
        "bf16": precision == "bfloat16",
        "fp16": precision == "float16",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def _supervised_args(hp: SFTHyperparameters | RewardHyperparameters, has_validation: bool):
    args: dict[str, Any] = {
        "num_train_epochs": hp.epochs,
        "max_steps": hp.max_steps or -1,
        **_warmup_argument(hp.warmup_ratio),
        "weight_decay": hp.weight_decay,
        "max_length": hp.max_length,
    }
    if has_validation:
        args["eval_on_start"] = True
        if hp.eval_steps:
            args.update(eval_strategy="steps", eval_steps=hp.eval_steps)
        else:
            args["eval_strategy"] = "epoch"
    else:
        args["eval_strategy"] = "no"
    return args


def _inference_dtype(hp: Hyperparameters) -> torch.dtype:
    """Models that only score or give reference log-probabilities run in the training precision."""
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        _precision(hp.precision), torch.float32
    )


def _scratch(output: Path) -> Path:
    """Where the trainer may write (checkpoints are off); removed when the stage ends."""
    return output / ".trainer"


def _no_rows_left(split: str, dropped: int, hp: Hyperparameters) -> StageError:
    return StageError(
        f"every {split} row ({dropped}) is longer than max_length ({hp.max_length} tokens); "
        "raise max_length"
    )


def _save(
    trainer,
    inputs: StageInputs,
    tokenizer: PreTrainedTokenizerBase,
    added_pad: bool,
    summary: dict[str, Any],
) -> None:
    output = inputs.output
    trainer.save_model(str(output))
    if is_main_process():
        save_tokenizer(tokenizer, output)
        write_record(
            output,
            stage=inputs.stage,
            tokenizer=tokenizer,
            added_pad_token=added_pad,
            base=inputs.base,
            reward_model=inputs.reward_model,
            hyperparameters=inputs.hyperparameters.to_json(),
            summary=summary,
        )
        # What the trainer writes beside the weights (its arguments) is not part of the model.
        (output / "training_args.bin").unlink(missing_ok=True)
        shutil.rmtree(_scratch(output), ignore_errors=True)


# --- SFT --------------------------------------------------------------------------------------


def _sft_rows(renderer: Renderer, examples: list[Example], max_length: int):
    rows: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    dropped = 0
    for example in examples:
        assert isinstance(example, Demonstration)
        prompt = renderer.prompt_ids(example.prompt)
        reply = renderer.reply_ids(example.reply)
        if len(prompt) + len(reply) > max_length:
            dropped += 1
            continue
        rows["input_ids"].append(prompt + reply)
        # Only the reply is learnt: the prompt's tokens carry the ignore label.
        rows["labels"].append([-100] * len(prompt) + reply)
    return rows, dropped


def _run_sft(inputs: StageInputs, sink: EventSink) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    hp = inputs.hyperparameters
    assert isinstance(hp, SFTHyperparameters)
    tokenizer, added_pad = load_tokenizer(inputs.base)
    renderer = Renderer(tokenizer)
    train, dropped_train = _sft_rows(renderer, inputs.train, hp.max_length)
    validation, dropped_validation = _sft_rows(renderer, inputs.validation, hp.max_length)
    if not train["input_ids"]:
        raise _no_rows_left("training", dropped_train, hp)
    _announce(
        sink,
        "sft",
        {
            "train": len(train["input_ids"]),
            "validation": len(validation["input_ids"]),
            "dropped_too_long": dropped_train + dropped_validation,
        },
    )
    set_seed(hp.seed)
    model = load_causal_lm(inputs.base, tokenizer)
    has_validation = bool(validation["input_ids"])
    config = SFTConfig(
        **_common_args(hp, _scratch(inputs.output)),
        **_supervised_args(hp, has_validation),
        packing=False,
        completion_only_loss=False,  # the labels already mask the prompt
    )
    callback = _events_callback(sink)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_dict(train),
        eval_dataset=Dataset.from_dict(validation) if has_validation else None,
        processing_class=tokenizer,
        callbacks=[callback],
    )
    training_started = time.monotonic()
    result = trainer.train()
    train_seconds = time.monotonic() - training_started
    summary: dict[str, Any] = {
        "steps": trainer.state.global_step,
        **_speed(callback, train_seconds, trainer.state.global_step),
        "train_loss": result.training_loss,
        "rows": len(train["input_ids"]),
        "dropped_too_long": {"train": dropped_train, "validation": dropped_validation},
    }
    losses = [v["validation_loss"] for _, v in callback.history if "validation_loss" in v]
    if losses:
        summary["validation_loss"] = losses[-1]
    _save(trainer, inputs, tokenizer, added_pad, summary)
    return summary


# --- reward model -----------------------------------------------------------------------------


def _preference_rows(renderer: Renderer, examples: list[Example], max_length: int):
    rows: dict[str, list[list[int]]] = {"chosen_ids": [], "rejected_ids": []}
    dropped = 0
    for example in examples:
        assert isinstance(example, Preference)
        prompt = renderer.prompt_ids(example.prompt)
        chosen = prompt + renderer.reply_ids(example.chosen)
        rejected = prompt + renderer.reply_ids(example.rejected)
        # TRL's reward trainer drops the same rows without a word; dropping them here counts them.
        if len(chosen) > max_length or len(rejected) > max_length:
            dropped += 1
            continue
        rows["chosen_ids"].append(chosen)
        rows["rejected_ids"].append(rejected)
    return rows, dropped


def pair_accuracy(model, rows: dict[str, list[list[int]]], *, batch_size: int) -> float | None:
    """Share of pairs whose chosen reply the model scores strictly higher."""
    if not rows["chosen_ids"]:
        return None
    chosen = score_sequences(model, rows["chosen_ids"], batch_size=batch_size)
    rejected = score_sequences(model, rows["rejected_ids"], batch_size=batch_size)
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(chosen)


def _run_reward_model(inputs: StageInputs, sink: EventSink) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import set_seed
    from trl import RewardConfig, RewardTrainer

    hp = inputs.hyperparameters
    assert isinstance(hp, RewardHyperparameters)
    tokenizer, added_pad = load_tokenizer(inputs.base)
    renderer = Renderer(tokenizer)
    train, dropped_train = _preference_rows(renderer, inputs.train, hp.max_length)
    validation, dropped_validation = _preference_rows(renderer, inputs.validation, hp.max_length)
    if not train["chosen_ids"]:
        raise _no_rows_left("training", dropped_train, hp)
    _announce(
        sink,
        "rm",
        {
            "train": len(train["chosen_ids"]),
            "validation": len(validation["chosen_ids"]),
            "dropped_too_long": dropped_train + dropped_validation,
        },
    )
    set_seed(hp.seed)  # the new scoring head's initialisation
    model = load_scorer(inputs.base, tokenizer)
    has_validation = bool(validation["chosen_ids"])
    callback = _events_callback(sink)
    config = RewardConfig(
        **_common_args(hp, _scratch(inputs.output)),
        **_supervised_args(hp, has_validation),
        center_rewards_coefficient=hp.center_rewards_coefficient or None,
        disable_dropout=True,
    )
    trainer = RewardTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_dict(train),
        eval_dataset=Dataset.from_dict(validation) if has_validation else None,
        processing_class=tokenizer,
        callbacks=[callback],
    )
    if len(trainer.train_dataset) != len(train["chosen_ids"]):
        raise StageError(
            f"the reward trainer kept {len(trainer.train_dataset)} of "
            f"{len(train['chosen_ids'])} training rows; rows were dropped without being counted"
        )
    training_started = time.monotonic()
    result = trainer.train()
    train_seconds = time.monotonic() - training_started
    batch = max(hp.batch_size, 16)
    summary: dict[str, Any] = {
        "steps": trainer.state.global_step,
        **_speed(callback, train_seconds, trainer.state.global_step),
        "train_loss": result.training_loss,
        "rows": len(train["chosen_ids"]),
        "dropped_too_long": {"train": dropped_train, "validation": dropped_validation},
        # Exact figures over every kept pair (the trainer's are means of batch means).
        "validation_accuracy": pair_accuracy(trainer.model, validation, batch_size=batch),
        "validation_pairs": len(validation["chosen_ids"]),
    }
    if has_validation:
        sink.metrics(trainer.state.global_step, {"accuracy": summary["validation_accuracy"]})
    _save(trainer, inputs, tokenizer, added_pad, summary)
    return summary


# --- PPO --------------------------------------------------------------------------------------


def _ppo_prompts(renderer: Renderer, examples: list[Example], room: int):
    kept: list[list[int]] = []
    messages = []
    dropped = 0
    for example in examples:
        assert isinstance(example, Prompt)
        ids = renderer.prompt_ids(example.prompt)
        if len(ids) > room:
            dropped += 1
            continue
        kept.append(ids)
        messages.append(example.prompt)
    return kept, messages, dropped


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _run_ppo(inputs: StageInputs, sink: EventSink) -> dict[str, Any]:
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import set_seed
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from trainer_bridge.training.checks import loaded_tokenizer_mismatch

    hp = inputs.hyperparameters
    assert isinstance(hp, PPOHyperparameters)
    if inputs.reward_model is None:
        raise StageError("the ppo stage needs --reward-model")
    tokenizer, added_pad = load_tokenizer(inputs.base)
    reward_tokenizer, _ = load_tokenizer(inputs.reward_model)
    mismatch = loaded_tokenizer_mismatch(tokenizer, reward_tokenizer)
    if mismatch:
        raise StageError(f"the reward model's tokenizer differs from the policy's: {mismatch}")
    renderer = Renderer(tokenizer)
    room = hp.max_length - hp.response_length
    train, _, dropped_train = _ppo_prompts(renderer, inputs.train, room)
    _, held_out, dropped_validation = _ppo_prompts(renderer, inputs.validation, room)
    state = PartialState()
    per_step = hp.effective_batch_size
    if len(train) < per_step:
        raise StageError(
            f"PPO samples batch_size x gradient_accumulation_steps ({per_step}) prompts per step "
            f"and process; the training file has {len(train)} usable prompts"
            + (
                f" ({dropped_train} longer than max_length - response_length)"
                if dropped_train
                else ""
            )
        )
    _announce(
        sink,
        "ppo",
        {
            "train": len(train),
            "validation": len(held_out),
            "dropped_too_long": dropped_train + dropped_validation,
        },
    )
    set_seed(hp.seed)
    inference_dtype = _inference_dtype(hp)
    policy = load_causal_lm(inputs.base, tokenizer)
    reference = load_causal_lm(inputs.base, tokenizer, dtype=inference_dtype)
    value = load_scorer(inputs.reward_model, tokenizer)
    reward = load_scorer(inputs.reward_model, tokenizer, dtype=inference_dtype)
    if hp.gradient_checkpointing:
        # TRL's PPO loop is its own, so the trainer argument alone would switch nothing on.
        for model in (policy, value):
            options = {"use_reentrant": False}
            # Recent transformers renamed the method; older ones only have the old name.
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
    # TRL sets the policy's generation eos to the stop token; the saved policy keeps its own.
    generation_config = copy.deepcopy(policy.generation_config)

    held_out = held_out[:HELD_OUT_PROMPTS]
    before = _held_out_reward(policy, reward, renderer, held_out, hp, state.device)

    # TRL counts a reply as finished when it holds the eos token: for a chat model that is the
    # end of the turn. The trainer gets a copy whose eos is that token; the saved one is intact.
    trainer_tokenizer = copy.deepcopy(tokenizer)
    trainer_tokenizer.eos_token = tokenizer.convert_ids_to_tokens(renderer.end_of_turn_id)
    dataset = Dataset.from_dict({"input_ids": train})
    config = PPOConfig(
        **_common_args(hp, _scratch(inputs.output)),
        total_episodes=hp.steps * per_step * state.num_processes,
        num_ppo_epochs=hp.ppo_epochs,
        num_mini_batches=hp.num_mini_batches,
        local_rollout_forward_batch_size=hp.batch_size,
        response_length=hp.response_length,
        temperature=hp.temperature,
        kl_coef=hp.kl_coef,
        kl_estimator=hp.kl_estimator,
        cliprange=hp.cliprange,
        vf_coef=hp.vf_coef,
        cliprange_value=hp.cliprange_value,
        gamma=hp.gamma,
        lam=hp.lam,
        whiten_rewards=hp.whiten_rewards,
        missing_eos_penalty=hp.missing_eos_penalty or None,
        stop_token_id=renderer.end_of_turn_id,
        num_sample_generations=0,
        sft_model_path=inputs.base,
        reward_model_path=inputs.reward_model,
    )
    callback = _events_callback(sink, every=hp.logging_steps)
    trainer = PPOTrainer(
        args=config,
        processing_class=trainer_tokenizer,
        model=policy,
        ref_model=reference,
        reward_model=reward,
        train_dataset=dataset,
        value_model=value,
        eval_dataset=dataset,
        callbacks=[callback],
    )
    training_started = time.monotonic()
    trainer.train()
    train_seconds = time.monotonic() - training_started
    policy.generation_config = generation_config
    trained = trainer.accelerator.unwrap_model(trainer.model).policy
    after = _held_out_reward(trained, reward, renderer, held_out, hp, state.device)

    rewards = [values["reward"] for _, values in callback.history if "reward" in values]
    kls = [values["kl"] for _, values in callback.history if "kl" in values]
    tenth = max(1, math.ceil(len(rewards) / 10))
    summary: dict[str, Any] = {
        "steps": trainer.state.global_step,
        **_speed(callback, train_seconds, trainer.state.global_step),
        "prompts": len(train),
        "dropped_too_long": {"train": dropped_train, "validation": dropped_validation},
        "reward_first_steps": _mean(rewards[:tenth]),
        "reward_last_steps": _mean(rewards[-tenth:]),
        "kl_last_steps": _mean(kls[-tenth:]),
        "held_out_prompts": len(held_out),
        "held_out_reward_before": before,
        "held_out_reward_after": after,
    }
    _save(trainer, inputs, tokenizer, added_pad, summary)
    return summary


def _held_out_reward(policy, reward, renderer, prompts, hp: PPOHyperparameters, device):
    """Mean reward of replies sampled for the held-out prompts, or None without any."""
    if not prompts:
        return None
    policy_device = next(policy.parameters()).device
    reward_device = next(reward.parameters()).device
    policy.to(device)
    reward.to(device)
    try:
        scores = policy_rewards(
            policy,
            reward,
            renderer,
            prompts,
            samples_per_prompt=HELD_OUT_SAMPLES,
            max_new_tokens=hp.response_length,
            temperature=hp.temperature,
            seed=hp.seed,
            batch_size=max(hp.batch_size, 16),
        )
    finally:
        policy.to(policy_device)
        reward.to(reward_device)
    return _mean(scores)
