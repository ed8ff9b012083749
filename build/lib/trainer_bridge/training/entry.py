"""The command line of one training run, for a worker, a cluster job or a person.

    python -m trainer_bridge.training.entry --stage {sft,rm,ppo} --train PATH
        [--validation PATH] --base MODEL_DIR [--reward-model RM_DIR] --output DIR
        --hyperparameters JSON --events PATH [--report-url URL]

or the same after `accelerate launch [options] -m trainer_bridge.training.entry`, which runs it
on several processes (only the main one writes events and saves). Events go to `--events` (see
`events`) and, with `--report-url`, to Parley's API with the token in $PARLEY_RUN_TOKEN. Every
run ends with a `finished` event: exit status 0 when it succeeded, 1 when it failed, 2 for
arguments that do not parse, 128 + the signal's number when a signal stopped it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from trainer_bridge.training.checkpoints import model_source
from trainer_bridge.training.data import DataError, read_examples, read_jsonl
from trainer_bridge.training.events import EventSink, is_main_process
from trainer_bridge.training.hyperparameters import (
    STAGES,
    HyperparameterError,
    hyperparameters_from_json,
)
from trainer_bridge.training.stages import StageError, StageInputs, run_stage
from trainer_bridge.training.tokens import TokenizerProblem

# Machines here reach no hub, and a run should never wait on one.
OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRL_EXPERIMENTAL_SILENCE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class UsageError(Exception):
    pass


class Stopped(BaseException):
    """A signal asked the run to stop (a cancelled job, a preempted node)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m trainer_bridge.training.entry",
        description="Run one training stage on Parley export files.",
    )
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--train", required=True, type=Path, help="training split (JSONL)")
    parser.add_argument("--validation", type=Path, help="validation split (JSONL)")
    parser.add_argument("--base", required=True, help="base model directory (or cached hub id)")
    parser.add_argument("--reward-model", help="reward model directory or hub id (ppo)")
    parser.add_argument("--output", required=True, type=Path, help="directory for the result")
    parser.add_argument(
        "--hyperparameters", default="{}", help="JSON object; missing names take defaults"
    )
    parser.add_argument("--events", required=True, type=Path, help="JSONL file of events")
    parser.add_argument("--report-url", help="also POST events here ($PARLEY_RUN_TOKEN)")
    return parser


def _stop(signum: int, frame) -> None:
    raise Stopped(signum)


def _run(args: argparse.Namespace, sink: EventSink) -> None:
    try:
        data = json.loads(args.hyperparameters)
    except json.JSONDecodeError as error:
        raise UsageError(f"--hyperparameters is not JSON: {error}") from None
    hyperparameters = hyperparameters_from_json(args.stage, data)
    if args.stage == "ppo" and args.reward_model is None:
        raise UsageError("the ppo stage needs --reward-model")
    if args.stage != "ppo" and args.reward_model is not None:
        raise UsageError(f"--reward-model is for the ppo stage, not {args.stage}")
    train = read_examples(args.stage, args.train, split="training")
    validation = []
    if args.validation is not None:
        if read_jsonl(args.validation):
            validation = read_examples(args.stage, args.validation, split="validation")
        else:
            sink.log(f"the validation file {args.validation.name} is empty; no validation")
    base = model_source(args.base, what="base model")
    reward_model = None
    if args.reward_model is not None:
        reward_model = model_source(args.reward_model, what="reward model")
    if is_main_process():
        args.output.mkdir(parents=True, exist_ok=True)

    # torch, transformers and TRL are imported by the stage, once the inputs are known to be usable.
    summary = run_stage(
        StageInputs(
            stage=args.stage,
            train=train,
            validation=validation,
            base=base,
            reward_model=reward_model,
            output=args.output,
            hyperparameters=hyperparameters,
        ),
        sink,
    )
    sink.succeeded(str(args.output), summary)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    # Where to report is read first, so that even arguments that do not parse end with an event.
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--events", type=Path)
    early.add_argument("--report-url")
    known, _ = early.parse_known_args(argv)
    sink = EventSink(known.events, report_url=known.report_url, enabled=is_main_process())
    signal.signal(signal.SIGTERM, _stop)
    try:
        args = build_parser().parse_args(argv)
        _run(args, sink)
    except UsageError as error:
        print(f"usage error: {error}", file=sys.stderr)
        sink.failed(f"bad arguments: {error}")
        return 2
    except (DataError, HyperparameterError, FileNotFoundError, TokenizerProblem) as error:
        print(f"error: {error}", file=sys.stderr)
        sink.failed(str(error))
        return 1
    except Stopped as stopped:
        print(f"error: {stopped}", file=sys.stderr)
        sink.failed(str(stopped))
        return 128 + stopped.signum
    except KeyboardInterrupt:
        sink.failed("interrupted")
        return 128 + signal.SIGINT
    except Exception as error:
        traceback.print_exc()
        message = str(error) if isinstance(error, StageError) else _describe(error)
        sink.failed(message)
        return 1
    return 0


def _describe(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
