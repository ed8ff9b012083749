"""Generation throughput: one request per forward pass against the batching worker path.

    python benchmarks/generation.py [--requests 64] [--n 4] [--new-tokens 32]
        [--model-dir PATH] [--device cpu] [--config-size tiny|0.5b]
    python benchmarks/generation.py --standalone ...   (see benchmarks/generation_engine.py)

Both modes use the same LoadedGenerator (the model is loaded once, through the worker's model
cache) and the same queued requests:

  baseline  one `generator.generate(rows)` call per request (its n rows), no database;
  batched   `process_generation(request_id)` for the first queued request, repeated until none
            is queued: what a Celery gpu worker does for one message, with the configured
            token budget (PARLEY_GENERATION_TOKEN_BUDGET, PARLEY_GENERATION_MAX_BATCH_REQUESTS).

In the table, "batches" counts `LoadedGenerator.generate` calls and worker sessions (each one
continuous batch, whatever the rows' sampling settings) and "fwd steps" the model's forward
passes (a prefill per group of rows joining, then one per decoding step while any row is
unfinished). Tokens are the completion tokens actually generated (sampling stops at the end of
the turn), so the table also shows rows and the mean completion length of each mode. The run
uses a throwaway SQLite database and an in-memory Celery broker in a temporary directory; it
never touches the developer's database or broker. It exits 0 whatever the ratio: it prints
figures, it does not assert them.

`--standalone` needs neither Django nor a database: it drives the engine directly, compares it
with transformers' `generate` (eager and compiled) on the same rows, and runs the mixed
workload of drafts during bulk candidates; it is what runs on a GPU box.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 4.0
SEED = 1234
TEMPERATURE = 0.8
TOP_P = 0.95

# --- Prompts (written for this benchmark) ----------------------------------------------------

_SUBJECTS = (
    "sourdough starter",
    "balcony tomato plant",
    "leaky kitchen tap",
    "second-hand road bike",
    "wool jumper",
    "cast iron pan",
    "paper kite",
    "old wooden chair",
    "goldfish bowl",
    "camping stove",
    "birthday cake",
    "garden pond",
    "library book",
    "winter coat",
    "violin string",
    "rusty padlock",
)
_TEMPLATES = (
    "How do I look after a {subject}?",
    "What should I check before buying a {subject}?",
    "My {subject} is not working. What can I try first?",
    "Give me two quick tips about a {subject}.",
    "Is it hard to clean a {subject} at home?",
    "Where is the best place to keep a {subject}?",
    "Can you explain in one sentence why a {subject} needs care?",
    "I just got a {subject}. What do I do today?",
)


def benchmark_prompts(count: int, *, seed: int = SEED) -> list[str]:
    """`count` short user prompts of varied wording and length, the same for the same seed."""
    rng = random.Random(seed)
    prompts = []
    for index in range(count):
        template = _TEMPLATES[index % len(_TEMPLATES)]
        prompts.append(template.format(subject=rng.choice(_SUBJECTS)))
    return prompts


# --- Set-up ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=64, help="generation requests (64)")
    parser.add_argument("--n", type=int, default=4, help="samples per request (4)")
    parser.add_argument("--new-tokens", type=int, default=32, help="max_new_tokens (32)")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="reuse (or build once into) this model directory instead of a temporary one",
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:0 (cpu)")
    parser.add_argument(
        "--config-size",
        choices=("tiny", "0.5b"),
        default="tiny",
        help="tiny: the trained tiny model; 0.5b: a randomly initialised ~0.5B Llama",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="no Django: the engine against transformers' generate, and the mixed workload",
    )
    from benchmarks.generation_engine import add_arguments

    add_arguments(parser)
    return parser.parse_args(argv)


def setup_django(var_dir: Path, *, device: str) -> None:
    """Point Django at a throwaway database and broker under `var_dir`, then migrate it.

    The variables are overwritten, not defaulted: a developer's DATABASE_URL or broker in the
    environment must never receive the benchmark's rows or messages.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    os.environ["PARLEY_VAR_DIR"] = str(var_dir)
    os.environ["DATABASE_URL"] = f"sqlite:///{var_dir / 'benchmark.sqlite3'}"
    os.environ["CELERY_BROKER_URL"] = "memory://"
    os.environ["CELERY_RESULT_BACKEND"] = ""
    os.environ["PARLEY_MODEL_DIR"] = str(var_dir / "models")
    os.environ["PARLEY_GENERATION_DEVICE"] = device
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    import django
    from django.core.management import call_command

    django.setup()
    # The in-memory broker has no host name; kombu warns about that on every publish.
    logging.getLogger("kombu").setLevel(logging.ERROR)
    call_command("migrate", verbosity=0)


def _policy_dir(model_dir: Path) -> Path | None:
    """The policy directory inside `model_dir` (tiny-model layout or a bare model), if built."""
    for candidate in (model_dir / "policy", model_dir):
        if (candidate / "config.json").is_file() and (candidate / "tokenizer.json").is_file():
            return candidate
    return None


def build_policy(model_dir: Path, *, config_size: str) -> Path:
    """The policy directory to load: reused when `model_dir` holds one, else built there."""
    existing = _policy_dir(model_dir)
    if existing is not None:
        print(f"Reusing the model in {existing}")
        return existing
    started = time.perf_counter()
    if config_size == "tiny":
        from trainer_bridge.tiny_model import build_tiny_model

        policy = build_tiny_model(model_dir, seed=0).policy
    else:
        policy = build_half_billion_llama(model_dir / "policy")
    print(f"Built the {config_size} model into {policy} in {time.perf_counter() - started:.1f} s")
    return policy


def build_half_billion_llama(directory: Path) -> Path:
    """A randomly initialised Llama of ~0.5B parameters with the tiny tokenizer, saved to disk.

    Random weights never choose the end-of-turn token, so every row runs to max_new_tokens.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from trainer_bridge.loading import quiet_progress_bars
    from trainer_bridge.tiny_model import END_OF_TURN_TOKEN, build_tiny_tokenizer, tiny_dialogues

    tokenizer = build_tiny_tokenizer(tiny_dialogues(0))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=16,
        intermediate_size=4864,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(END_OF_TURN_TOKEN), tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    directory.mkdir(parents=True, exist_ok=True)
    with quiet_progress_bars():
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
    return directory


# --- Measurement -----------------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    requests: int = 0
    rows: int = 0
    batches: int = 0
    steps: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    @property
    def mean_length(self) -> float:
        return self.completion_tokens / self.rows if self.rows else 0.0


class CallCounter:
    """Counts batches (`generator.generate` calls and worker sessions) and forward passes."""

    def __init__(self, generator) -> None:
        self.batches = 0
        self.steps = 0
        # The worker gets this same instance from the model cache, so it calls the wrappers too.
        for name in ("generate", "session"):
            setattr(generator, name, self._counted(getattr(generator, name)))
        generator.model.register_forward_hook(self._count_step)

    def _counted(self, method):
        def counted(*args, **kwargs):
            self.batches += 1
            return method(*args, **kwargs)

        return counted

    def _count_step(self, *_args) -> None:
        self.steps += 1

    def snapshot(self) -> tuple[int, int]:
        return self.batches, self.steps


def create_requests(args: argparse.Namespace, policy: Path, *, dtype: str):
    """The model version, a project and `args.requests` queued requests (sampling, fixed seed)."""
    from django.db import transaction

    from annotations.models import ModelVersion, Project
    from annotations.services import conversation_start
    from trainer_bridge.generation import generation_request_create

    version = ModelVersion.objects.create(
        name=f"benchmark-{args.config_size}", source=str(policy), dtype=dtype
    )
    project = Project.objects.create(
        slug="benchmark",
        name="Generation benchmark",
        max_generations_per_request=max(9, args.n),
    )
    params = {
        "max_new_tokens": args.new_tokens,
        "temperature": TEMPERATURE,
        "top_p": TOP_P,
        "seed": SEED,
    }
    requests = []
    with transaction.atomic():
        for prompt in benchmark_prompts(args.requests):
            _, context = conversation_start(project=project, text=prompt)
            requests.append(
                generation_request_create(
                    project=project,
                    context=context,
                    model_version=version,
                    purpose="candidates",
                    n=args.n,
                    params=params,
                )
            )
    return version, requests


def run_baseline(generator, counter: CallCounter, requests) -> Result:
    """One `generate` call per request, for its n rows alone, on the already loaded model."""
    from trainer_bridge.backends import Row
    from trainer_bridge.sampling_params import SamplingParams
    from trainer_bridge.selectors import request_messages

    work = []
    for request in requests:
        ids = generator.encode_chat(request_messages(request))
        sampling = SamplingParams.from_json(request.params)
        work.append(
            [Row(prompt_ids=ids, sampling=sampling, sample_index=i) for i in range(request.n)]
        )
    result = Result(mode="baseline", requests=len(requests))
    batches, steps = counter.snapshot()
    started = time.perf_counter()
    for rows in work:
        samples = generator.generate(rows)
        result.rows += len(samples)
        result.completion_tokens += sum(s.completion_tokens for s in samples)
    result.seconds = time.perf_counter() - started
    result.batches = counter.batches - batches
    result.steps = counter.steps - steps
    return result


def run_batched(counter: CallCounter, requests) -> tuple[Result, list, float]:
    """`process_generation` on the first queued request until none is queued, as a worker would.

    Also times the now-redundant deliveries of the other requests' messages (each a no-op).
    """
    from django.db.models import Sum

    from trainer_bridge.models import GenerationRequest
    from trainer_bridge.worker import process_generation

    queued = GenerationRequest.objects.filter(state=GenerationRequest.State.QUEUED)
    result = Result(mode="batched", requests=len(requests))
    reports = []
    batches, steps = counter.snapshot()
    started = time.perf_counter()
    while (
        first := queued.order_by("queued_at", "id").values_list("id", flat=True).first()
    ) is not None:
        report = process_generation(first)
        reports.append(report)
        result.rows += report.rows
    result.seconds = time.perf_counter() - started
    result.batches = counter.batches - batches
    result.steps = counter.steps - steps
    ids = [r.pk for r in requests]
    result.completion_tokens = (
        GenerationRequest.objects.filter(pk__in=ids, state=GenerationRequest.State.DONE).aggregate(
            total=Sum("completion_tokens")
        )["total"]
        or 0
    )
    noop_started = time.perf_counter()
    for request_id in ids:
        process_generation(request_id)
    noop_seconds = time.perf_counter() - noop_started
    return result, reports, noop_seconds


def print_table(results: list[Result]) -> None:
    header = (
        f"{'mode':<9} {'requests':>8} {'rows':>6} {'batches':>7} {'fwd steps':>9} "
        f"{'tokens':>7} {'mean len':>8} {'seconds':>8} {'tokens/s':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.mode:<9} {r.requests:>8} {r.rows:>6} {r.batches:>7} {r.steps:>9} "
            f"{r.completion_tokens:>7} {r.mean_length:>8.1f} {r.seconds:>8.2f} "
            f"{r.tokens_per_second:>9.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    args = parse_args(argv)
    if args.standalone:
        from benchmarks.generation_engine import main as standalone

        return standalone(args)
    load_at_start = os.getloadavg()[0]
    if args.config_size == "0.5b" and not args.device.startswith("cuda"):
        print(
            "WARNING: --config-size 0.5b on the CPU is very slow (minutes per batch); "
            "it is meant for --device cuda. Consider fewer --requests.",
            flush=True,
        )
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as scratch:
        scratch_dir = Path(scratch)
        setup_django(scratch_dir, device=args.device)

        import torch
        from django.conf import settings
        from django.db import connections

        from trainer_bridge.backends import Row, model_cache
        from trainer_bridge.sampling_params import SamplingParams
        from trainer_bridge.worker import batch_limits

        model_dir = args.model_dir or scratch_dir / "models" / args.config_size
        policy = build_policy(Path(model_dir), config_size=args.config_size)
        dtype = "bfloat16" if args.config_size == "0.5b" and args.device != "cpu" else "auto"
        version, requests = create_requests(args, policy, dtype=dtype)

        config = settings.PARLEY["GENERATION"]
        generator = model_cache().get(version, device=args.device)
        parameters = sum(p.numel() for p in generator.model.parameters())
        counter = CallCounter(generator)
        print(
            f"model: {args.config_size} ({parameters / 1e6:.1f} M parameters, "
            f"{next(generator.model.parameters()).dtype}) on {args.device}; "
            f"torch threads: {torch.get_num_threads()}; "
            f"load average at start: {load_at_start:.2f} on {os.cpu_count()} CPUs"
        )
        print(
            f"workload: {args.requests} requests x n={args.n}, max_new_tokens={args.new_tokens}, "
            f"temperature={TEMPERATURE}, top_p={TOP_P}, seed={SEED}"
        )
        token_budget, max_requests = batch_limits(generator)
        print(
            f"worker settings: TOKEN_BUDGET={config['TOKEN_BUDGET']} ({token_budget}), "
            f"MAX_BATCH_REQUESTS={config['MAX_BATCH_REQUESTS']} ({max_requests}), "
            f"TOP_P_CANDIDATES={config['TOP_P_CANDIDATES']}, "
            f"TORCH_THREADS={config['TORCH_THREADS']}; {generator.plan.describe()}"
        )

        # Warm-up: the first generate call pays for lazy initialisation (and CUDA kernels).
        warm_ids = generator.encode_chat([{"role": "user", "content": "Hello there!"}])
        warm = SamplingParams(max_new_tokens=4, temperature=TEMPERATURE, top_p=TOP_P, seed=SEED)
        generator.generate(
            [Row(prompt_ids=warm_ids, sampling=warm, sample_index=i) for i in (0, 1)]
        )

        baseline = run_baseline(generator, counter, requests)
        batched, reports, noop_seconds = run_batched(counter, requests)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

        print()
        print_table([baseline, batched])
        print()
        sizes = ", ".join(f"{r.requests} req/{r.rows} rows" for r in reports if r.requests)
        failed = sum(r.failed for r in reports)
        print(f"worker batches claimed: {len(reports)} ({sizes}); failed requests: {failed}")
        print(
            f"redundant deliveries: {len(requests)} process_generation calls on finished "
            f"requests took {noop_seconds * 1000:.0f} ms in all (no-ops)"
        )
        cpus = os.cpu_count() or 1
        load_at_end = os.getloadavg()[0]
        if not args.device.startswith("cuda") and (
            load_at_start > cpus / 2 or load_at_end > cpus + 0.5
        ):
            print(
                f"NOTE: load average {load_at_start:.2f} at start, {load_at_end:.2f} at end, on "
                f"{cpus} CPUs: other processes competed for the CPU, and multi-threaded torch "
                "slows down badly when they do; rerun on an idle machine (or OMP_NUM_THREADS=1)."
            )
        if baseline.mean_length and batched.mean_length:
            drift = abs(batched.mean_length - baseline.mean_length) / baseline.mean_length
            if drift > 0.25:
                print(
                    f"NOTE: mean completion lengths differ by {drift:.0%} between the modes "
                    "(sampling stops at the end of the turn; min_new_tokens is not a request "
                    "parameter), so compare tokens/s with that in mind."
                )
        ratio = (
            batched.tokens_per_second / baseline.tokens_per_second
            if baseline.tokens_per_second
            else 0.0
        )
        verdict = "MEETS" if ratio >= TARGET_RATIO else "MISSES"
        print(
            f"ratio batched/baseline: {ratio:.2f}x  "
            f"(target: batched >= {TARGET_RATIO:g}x baseline) -> {verdict} the target"
        )
        connections.close_all()  # before the temporary database file is removed
    return 0


if __name__ == "__main__":
    sys.exit(main())
