"""Training throughput: the reward-model and PPO stages on a model of realistic size.

    python benchmarks/training.py [--device cuda] [--config-size tiny|0.5b] [--steps 10]
        [--batch-size 16] [--response-length 64] [--work DIR]

Builds a policy (`tiny`: the trained tiny model; `0.5b`: the randomly initialised ~0.5B Llama
of `benchmarks/generation.py`, with the tiny tokenizer), writes synthetic preferences and
prompts files, then runs the rm stage from the policy and the ppo stage against that reward
model, each for `--steps` optimizer steps, through the entry point a training backend runs
(`python -m trainer_bridge.training.entry`, one process per stage). It prints each stage's
steps per second (between its first and last step, so start-up and warm-up are left out), its
wall time and, on a GPU, its peak memory (`torch.cuda.max_memory_allocated` / `_reserved`).

Needs torch, transformers, accelerate, datasets and TRL; not Django. Exits non-zero if a stage
fails. It prints figures; it asserts none.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENTRY_MODULE = "trainer_bridge.training.entry"
SEED = 1234


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N (cuda)")
    parser.add_argument("--config-size", choices=("tiny", "0.5b"), default="0.5b")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per stage (10)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs / prompts per step")
    parser.add_argument("--response-length", type=int, default=64, help="PPO reply tokens (64)")
    parser.add_argument(
        "--work", type=Path, default=None, help="keep models and files here (a temporary folder)"
    )
    return parser.parse_args(argv)


# --- inputs -----------------------------------------------------------------------------------


def build_policy(work: Path, config_size: str) -> Path:
    if config_size == "tiny":
        from trainer_bridge.tiny_model import build_tiny_model

        return build_tiny_model(work / "tiny", seed=0).policy
    from benchmarks.generation import build_half_billion_llama

    return build_half_billion_llama(work / "policy-0.5b")


def write_inputs(work: Path, *, pairs: int, prompts: int) -> tuple[Path, Path]:
    """A preferences file (`pairs` rows) and a prompts file, from the tiny model's corpus."""
    from trainer_bridge.tiny_model import tiny_dialogues

    rng = random.Random(SEED)
    dialogues = tiny_dialogues(SEED, max(pairs, prompts) * 2)
    contexts = [
        d[: next(i for i, m in enumerate(d) if m["role"] == "assistant")] for d in dialogues
    ]
    replies = [m["content"] for d in dialogues for m in d if m["role"] == "assistant"]
    preferences = work / "preferences.jsonl"
    with preferences.open("w") as handle:
        for index in range(pairs):
            chosen, rejected = rng.sample(replies, 2)
            row = {
                "prompt": contexts[index % len(contexts)],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "meta": {"group_id": f"set-{index}", "margin": 1.0},
            }
            handle.write(json.dumps(row) + "\n")
    prompt_file = work / "prompts.jsonl"
    with prompt_file.open("w") as handle:
        for context in contexts[:prompts]:
            handle.write(json.dumps({"prompt": context}) + "\n")
    return preferences, prompt_file


# --- running a stage --------------------------------------------------------------------------


def run_stage(
    work: Path,
    *,
    stage: str,
    train: Path,
    base: Path,
    hyperparameters: dict,
    device: str,
    reward_model: Path | None = None,
) -> dict:
    """One stage through the entry point; its finished event's summary, with the wall time."""
    output = work / f"{stage}-output"
    events = work / f"{stage}-events.jsonl"
    events.unlink(missing_ok=True)
    command = [sys.executable, "-m", ENTRY_MODULE, "--stage", stage, "--train", str(train)]
    command += ["--base", str(base), "--output", str(output), "--events", str(events)]
    command += ["--hyperparameters", json.dumps(hyperparameters)]
    if reward_model is not None:
        command += ["--reward-model", str(reward_model)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif device.startswith("cuda:"):
        env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    started = time.perf_counter()
    # The command is this interpreter running the entry point on files this script wrote.
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)  # noqa: S603
    wall = time.perf_counter() - started
    finished = [json.loads(line) for line in events.read_text().splitlines()][-1:]
    if result.returncode != 0 or not finished or finished[0].get("state") != "succeeded":
        print(result.stdout[-3000:], file=sys.stderr)
        print(result.stderr[-6000:], file=sys.stderr)
        error = finished[0].get("error") if finished else "no finished event"
        raise SystemExit(f"the {stage} stage failed (exit {result.returncode}): {error}")
    return {**finished[0]["summary"], "wall_seconds": wall, "output": output}


def describe_environment(device: str) -> str:
    import accelerate
    import datasets
    import torch
    import transformers
    import trl

    if device.startswith("cuda") and torch.cuda.is_available():
        where = torch.cuda.get_device_name(0)
    else:
        where = f"cpu ({os.cpu_count()} cores)"
    return (
        f"{where}; python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, accelerate {accelerate.__version__}, "
        f"datasets {datasets.__version__}, trl {trl.__version__}"
    )


def _gib(summary: dict, key: str) -> str:
    value = summary.get(key)
    return f"{value:.2f}" if isinstance(value, int | float) else "-"


def print_table(rows: list[tuple[str, dict]]) -> None:
    header = (
        f"{'stage':<6} {'steps':>5} {'steps/s':>8} {'train s':>8} {'wall s':>7} "
        f"{'peak alloc GiB':>14} {'peak reserved GiB':>17}"
    )
    print(header)
    print("-" * len(header))
    for stage, summary in rows:
        print(
            f"{stage:<6} {summary['steps']:>5} {summary['steps_per_second']:>8.3f} "
            f"{summary['train_seconds']:>8.1f} {summary['wall_seconds']:>7.1f} "
            f"{_gib(summary, 'peak_memory_allocated_gib'):>14} "
            f"{_gib(summary, 'peak_memory_reserved_gib'):>17}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parley-train-bench-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        print(describe_environment(args.device), flush=True)
        started = time.perf_counter()
        policy = build_policy(work, args.config_size)
        print(f"built the {args.config_size} policy in {time.perf_counter() - started:.1f} s")
        pairs = args.steps * args.batch_size
        preferences, prompts = write_inputs(work, pairs=pairs, prompts=max(4 * args.batch_size, 64))
        common = {"batch_size": args.batch_size, "logging_steps": 1, "seed": 0}
        reward = run_stage(
            work,
            stage="rm",
            train=preferences,
            base=policy,
            device=args.device,
            hyperparameters={**common, "max_steps": args.steps, "max_length": 256},
        )
        print_table([("rm", reward)])
        ppo = run_stage(
            work,
            stage="ppo",
            train=prompts,
            base=policy,
            reward_model=reward["output"],
            device=args.device,
            hyperparameters={
                **common,
                "steps": args.steps,
                "response_length": args.response_length,
                "max_length": 256 + args.response_length,
            },
        )
        print()
        print(
            f"workload: {args.config_size} policy; rm: {args.steps} steps of {args.batch_size} "
            f"pairs; ppo: {args.steps} steps of {args.batch_size} prompts x "
            f"{args.response_length} sampled tokens, 4 PPO epochs; precision auto"
        )
        print_table([("rm", reward), ("ppo", ppo)])
        print(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
