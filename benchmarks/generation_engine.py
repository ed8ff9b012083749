"""The generation engine against transformers on the same rows, without Django or a database.

    python benchmarks/generation.py --standalone [--config-size tiny|0.5b] [--device cuda]
        [--workloads 2048x64,256x32] [--skip hf-compiled,...] [--deadline-seconds 225]

What runs on a GPU box that has torch and transformers but not the web stack: it drives the
worker's decoding core (`LoadedGenerator` sessions: continuous batching on the preallocated KV
cache, CUDA graphs on CUDA) directly, on rows made from the benchmark's prompts, and prints,
section by section as each is measured:

  plan        the KV cache the model gets from free memory, and how many rows fit per length;
  warm-up     the CUDA graphs captured for each session length (once per worker), and how long;
  engine      each workload (rows x new tokens) through one session: tokens/s, ms a step, the
              first step (prefill) apart, reserved and allocated memory;
  prefill     every row of each workload joining an idle session (the prefill alone), against
              bare causal forwards of the model over the same right-padded prompts (no cache,
              no mask); then where the time of one such prefill goes (torch's profiler, the
              operations that took longest on the device);
  floor       bare forward passes of the model over the same batch and cache (one CUDA graph):
              the fastest any decoding loop on this model could go, with each way a step can
              attend (PARLEY_GENERATION_STEP_ATTENTION: sdpa, matmul);
  mixed       drafts one at a time on an idle engine, then the same drafts arriving while
              candidate rows keep the engine full: draft latency p50/p95, and the ratio;
  hf-eager    transformers' `generate` on the same rows (dynamic cache), sampling as we do;
  hf-compiled the same with `cache_implementation="static"`, which transformers compiles on
              CUDA (its first call, compilation included, is timed apart).

Every section is wrapped: one that fails prints its traceback and the others still run. A
section that would start after --deadline-seconds is skipped, saying so.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.generation import SEED, TEMPERATURE, TOP_P, benchmark_prompts, build_policy

SECTIONS = ("engine", "prefill", "floor", "mixed", "hf-eager", "hf-compiled")
PROFILE_ROWS = 12
PROFILED_STEPS = 3
TARGETS = {(2048, 64): 80_000, (256, 32): 38_000}
MEMORY_RATIO_TARGET = 1.5
DRAFT_RATIO_TARGET = 2.0


def parse_workloads(text: str) -> list[tuple[int, int]]:
    """`2048x64,256x32` -> [(2048, 64), (256, 32)] (rows x new tokens)."""
    workloads = []
    for part in text.split(","):
        rows, _, tokens = part.strip().partition("x")
        workloads.append((int(rows), int(tokens)))
    return workloads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--standalone")
    group.add_argument("--workloads", default="2048x64,256x32", help="rows x new tokens, ...")
    group.add_argument(
        "--dtype", default=None, help="model dtype (default: bfloat16 on CUDA, float32 on CPU)"
    )
    group.add_argument("--skip", default="", help=f"sections to skip: {', '.join(SECTIONS)}")
    group.add_argument(
        "--hf-compiled-workloads",
        default="",
        help="workloads for hf-compiled (default: all; each compiles once, ~1 min on a GPU)",
    )
    group.add_argument(
        "--drafts",
        type=int,
        default=64,
        help="drafts in the mixed workload (64: p95 is the fourth slowest)",
    )
    group.add_argument("--draft-tokens", type=int, default=64, help="new tokens of a draft")
    group.add_argument(
        "--draft-interval", type=float, default=0.05, help="seconds between draft arrivals"
    )
    group.add_argument(
        "--bulk-rows", type=int, default=2048, help="candidate rows kept running (mixed)"
    )
    group.add_argument("--bulk-tokens", type=int, default=64, help="most new tokens a candidate")
    group.add_argument("--no-cuda-graphs", action="store_true", help="decode eagerly on CUDA")
    group.add_argument(
        "--step-attention",
        default="sdpa",
        choices=("sdpa", "matmul"),
        help="how the engine's decoding steps attend (sdpa)",
    )
    group.add_argument(
        "--deadline-seconds",
        type=float,
        default=0,
        help="skip sections that would start later than this (0: none)",
    )
    group.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes through every section: does each path run on this device?",
    )


@dataclass
class Clock:
    """The device's clock: waits for queued work before reading the time."""

    device: str

    def now(self) -> float:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()


class Report:
    """Prints as it goes; keeps the figures the targets need for the summary."""

    def __init__(self, deadline: float) -> None:
        self.started = time.perf_counter()
        self.deadline = deadline
        self.figures: dict[str, float] = {}
        self.lines: list[str] = []

    def line(self, text: str = "") -> None:
        print(text, flush=True)

    def target(self, text: str) -> None:
        self.lines.append(text)
        self.line(f"TARGET {text}")

    def past_deadline(self) -> bool:
        return bool(self.deadline) and time.perf_counter() - self.started > self.deadline

    def section(self, name: str, skip: set[str], run: Callable[[], None]) -> None:
        elapsed = time.perf_counter() - self.started
        if name in skip:
            self.line(f"\n== {name}: skipped (--skip)")
            return
        if self.past_deadline():
            self.line(f"\n== {name}: skipped (started at {elapsed:.0f} s, past the deadline)")
            return
        self.line(f"\n== {name} (at {elapsed:.0f} s)")
        try:
            run()
        except Exception:
            self.line(f"!! {name} failed:\n{traceback.format_exc()}")


def memory_line(device: str) -> tuple[str, float]:
    """Peak reserved and allocated memory since the last reset, and their ratio."""
    if not device.startswith("cuda"):
        return "memory: (CPU: not measured)", 0.0
    import torch

    reserved = torch.cuda.max_memory_reserved()
    allocated = torch.cuda.max_memory_allocated()
    ratio = reserved / allocated if allocated else 0.0
    now_reserved, now_allocated = torch.cuda.memory_reserved(), torch.cuda.memory_allocated()
    return (
        f"memory: peak reserved {reserved / 2**30:.2f} GiB, peak allocated "
        f"{allocated / 2**30:.2f} GiB (ratio {ratio:.2f}); now {now_reserved / 2**30:.2f} / "
        f"{now_allocated / 2**30:.2f} GiB",
        ratio,
    )


def reset_peaks(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


# --- The sections ----------------------------------------------------------------------------


class Suite:
    def __init__(self, args: argparse.Namespace, generator, report: Report) -> None:
        self.args = args
        self.generator = generator
        self.report = report
        self.device = args.device
        self.clock = Clock(args.device)
        self.workloads = parse_workloads(args.workloads)
        prompts = benchmark_prompts(max(rows for rows, _ in self.workloads))
        self.prompt_ids = generator.encode_chats(
            [[{"role": "user", "content": p}] for p in prompts]
        )

    def sampling(self, new_tokens: int, *, seed: int = SEED):
        from trainer_bridge.sampling_params import SamplingParams

        return SamplingParams(
            temperature=TEMPERATURE, top_p=TOP_P, max_new_tokens=new_tokens, seed=seed
        )

    def rows(self, count: int, new_tokens: int, *, draft: bool = False, tag: str = "r"):
        from trainer_bridge.backends import Row

        sampling = self.sampling(new_tokens)
        return [
            ((tag, i), Row(self.prompt_ids[i % len(self.prompt_ids)], sampling, i, draft=draft))
            for i in range(count)
        ]

    def length(self, new_tokens: int) -> int:
        return max(len(ids) for ids in self.prompt_ids) + new_tokens

    # plan and warm-up

    def plan(self) -> None:
        from trainer_bridge.kv_cache import length_bucket

        engine = self.generator.engine
        line = self.report.line
        line(f"plan: {engine.plan.describe()}")
        for rows, tokens in self.workloads:
            length = length_bucket(self.length(tokens))
            line(
                f"  {rows} x {tokens}: rows of up to {self.length(tokens)} tokens -> sessions "
                f"of {length}; {engine.slots_for(length):,} rows fit at once"
            )
        line(
            f"steps: {'bucketed, graph-safe sampler' if engine.static else 'eager, exact batch'}; "
            f"CUDA graphs: {'on' if engine.use_graphs else 'off'}; sampler width "
            f"{engine.width} of a {engine.vocab}-token vocabulary"
        )

    def warm_up(self) -> None:
        engine = self.generator.engine
        lengths = [self.length(tokens) for _, tokens in self.workloads]
        lengths.append(self.length(max(self.args.bulk_tokens, self.args.draft_tokens)))
        started = time.perf_counter()
        warmups = engine.warm_up(lengths)
        total = time.perf_counter() - started
        for w in warmups:
            error = f" (FAILED, decoding eagerly: {w.error})" if w.error else ""
            self.report.line(
                f"warm-up: {w.graphs} CUDA graphs for sessions of {w.length} tokens in "
                f"{w.seconds:.1f} s{error}"
            )
        if not warmups:
            self.report.line("warm-up: nothing to capture (no CUDA graphs on this device)")
        self.report.line(f"warm-up total: {total:.1f} s (once per worker start)")
        self.report.figures["warmup_seconds"] = total

    # our engine

    def run_engine(self, rows: int, tokens: int) -> tuple[float, int, int, float]:
        """(seconds, tokens, steps, first step seconds) for one session of `rows` rows."""
        work = self.rows(rows, tokens)
        generated = 0
        started = self.clock.now()
        first = 0.0
        with self.generator.session(length=self.length(tokens)) as session:
            session.add(work)
            while session.busy():
                outcome = session.step()
                if not first:
                    first = self.clock.now() - started
                generated += sum(f.sample.completion_tokens for f in outcome.finished)
                if outcome.failed:
                    raise RuntimeError(f"rows failed: {outcome.failed[:3]}")
            steps = session.steps
        return self.clock.now() - started, generated, steps, first

    def engine(self) -> None:
        for rows, tokens in self.workloads:
            self.run_engine(min(rows, 8), min(tokens, 4))  # first-call costs out of the way
            reset_peaks(self.device)
            seconds, generated, steps, first = self.run_engine(rows, tokens)
            memory, ratio = memory_line(self.device)
            rate = generated / seconds
            per_step = (seconds - first) / max(1, steps - 1) * 1000
            self.report.line(
                f"engine {rows} x {tokens}: {generated:,} tokens in {seconds:.3f} s = "
                f"{rate:,.0f} tokens/s; {steps} steps, {per_step:.2f} ms a step after the "
                f"first ({first * 1000:.1f} ms, with the prefill of every row)"
            )
            self.report.line(f"  {memory}")
            target = TARGETS.get((rows, tokens))
            if target:
                verdict = "MEETS" if rate >= target else "MISSES"
                self.report.target(
                    f"engine {rows}x{tokens}: {rate:,.0f} tokens/s (target >= {target:,}) "
                    f"-> {verdict}"
                )
            if ratio:
                verdict = "MEETS" if ratio <= MEMORY_RATIO_TARGET else "MISSES"
                self.report.target(
                    f"memory {rows}x{tokens}: reserved / allocated {ratio:.2f} "
                    f"(target <= {MEMORY_RATIO_TARGET}) -> {verdict}"
                )

    def prefill(self) -> None:
        """Our prefill against bare forwards of the same prompts, then its profile."""
        for rows, tokens in self.workloads:
            self.time_prefill(min(rows, 8), min(tokens, 4))  # first-call costs out of the way
            seconds, chunks, prompt_tokens, rows = self.time_prefill(rows, tokens)
            bare, padded = self.bare_prefill(rows)
            self.report.line(
                f"prefill {rows} rows: {prompt_tokens:,} prompt tokens in {chunks} forwards, "
                f"{seconds * 1000:.1f} ms = {prompt_tokens / seconds:,.0f} tokens/s; bare "
                f"causal forwards of the same {padded:,} padded tokens {bare * 1000:.1f} ms "
                f"({seconds / bare:.2f}x)"
            )
        rows, tokens = self.workloads[0]
        self.profiled(f"prefill {rows} rows", lambda: self.time_prefill(rows, tokens))

    def time_prefill(self, rows: int, tokens: int) -> tuple[float, int, int, int]:
        """(seconds, forwards, prompt tokens, rows) for `rows` rows, or as many as the
        session holds, joining an idle session."""
        engine = self.generator.engine
        with self.generator.session(length=self.length(tokens)) as session:
            rows = min(rows, session.slots)
            work = self.rows(rows, tokens)
            session.add(work)
            before = engine.prefills
            started = self.clock.now()
            joined = session.join().joined
            seconds = self.clock.now() - started
            chunks = engine.prefills - before
        if joined != rows:
            raise RuntimeError(f"{joined} of {rows} rows joined")
        # The last prompt token of each row is its first step's, not the prefill's.
        return seconds, chunks, sum(len(row.prompt_ids) - 1 for _, row in work), rows

    def bare_prefill(self, rows: int) -> tuple[float, int]:
        """(seconds, padded tokens): the model's own forwards over the same prompts but their
        last tokens, right-padded, in chunks of the same token budget; no cache, no mask."""
        import torch

        prompts = sorted(
            (self.prompt_ids[i % len(self.prompt_ids)][:-1] for i in range(rows)), key=len
        )
        budget = self.generator.engine.settings.prefill_tokens
        chunks: list[list[tuple[int, ...]]] = [[]]
        for prompt in prompts:
            if chunks[-1] and len(prompt) * (len(chunks[-1]) + 1) > budget:
                chunks.append([])
            chunks[-1].append(prompt)
        pad = self.generator.pad_id
        batches = [
            torch.tensor([[*p, *[pad] * (max(map(len, c)) - len(p))] for p in c]) for c in chunks
        ]
        batches = [b.to(self.device) for b in batches if b.shape[1]]
        model = self.generator.model
        with torch.inference_mode():
            model(input_ids=batches[0][:2], use_cache=False, logits_to_keep=1)
            started = self.clock.now()
            for batch in batches:
                model(input_ids=batch, use_cache=False, logits_to_keep=1)
            seconds = self.clock.now() - started
        return seconds, sum(b.numel() for b in batches)

    def profiled(self, label: str, run: Callable[[], object]) -> None:
        """The operations `run` spent longest on, by torch's profiler (on the device's clock
        on CUDA)."""
        from torch.profiler import ProfilerActivity, profile

        cuda = self.device.startswith("cuda")
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as profiler:
            run()
        key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        self.report.line(f"{label}, profiled (top {PROFILE_ROWS} by {key}):")
        table = profiler.key_averages().table(sort_by=key, row_limit=PROFILE_ROWS)
        for text in table.splitlines():
            self.report.line(f"  {text}")

    def floor(self) -> None:
        from trainer_bridge.attention import STEP_ATTENTION
        from trainer_bridge.kv_cache import LENGTH_QUANTUM, length_bucket

        engine = self.generator.engine
        for rows, tokens in self.workloads:
            length = length_bucket(self.length(tokens))
            steps = tokens
            for attention in STEP_ATTENTION:
                engine.forward_floor(rows=rows, length=length, steps=2, step_attention=attention)
                seconds = engine.forward_floor(
                    rows=rows, length=length, steps=steps, step_attention=attention
                )
                used = " (the engine's)" if attention == engine.settings.step_attention else ""
                self.report.line(
                    f"floor {rows} x {tokens}, {attention} attention{used}: {steps} bare "
                    f"forwards over {length} columns in {seconds:.3f} s = "
                    f"{seconds / steps * 1000:.2f} ms a step, {rows * steps / seconds:,.0f} "
                    "tokens/s"
                )
        # Where a step's time goes: what grows with the columns attended (the cache read), then
        # its kernels, launched one by one (a graph hides them).
        rows, tokens = self.workloads[0]
        length = length_bucket(self.length(tokens))
        for columns in sorted({LENGTH_QUANTUM, length // 2} - {length}):
            engine.forward_floor(rows=rows, length=columns, steps=2)
            seconds = engine.forward_floor(rows=rows, length=columns, steps=tokens)
            self.report.line(
                f"floor {rows} x {tokens} over {columns} columns (not {length}): "
                f"{seconds / tokens * 1000:.2f} ms a step"
            )
        if engine.use_graphs:
            seconds = engine.forward_floor(rows=rows, length=length, steps=tokens, graph=False)
            self.report.line(
                f"floor {rows} x {tokens} without a CUDA graph: {seconds / tokens * 1000:.2f} ms "
                "a step"
            )
        self.profiled(
            f"floor {rows} rows, {PROFILED_STEPS} forwards without a graph",
            lambda: engine.forward_floor(
                rows=rows, length=length, steps=PROFILED_STEPS, graph=False
            ),
        )

    # the mixed workload

    def draft_alone(self, work: list) -> float:
        length = self.length(max(self.args.bulk_tokens, self.args.draft_tokens))
        started = time.perf_counter()
        with self.generator.session(length=length) as session:
            session.add(work)
            while session.busy():
                session.step()
        return time.perf_counter() - started

    def mixed(self) -> None:
        args = self.args
        # The same drafts alone and under load: their prompts, and so their lengths, differ.
        drafts = self.rows(args.drafts, args.draft_tokens, draft=True, tag="draft")
        self.draft_alone(drafts[:1])
        idle = [self.draft_alone([draft]) for draft in drafts]
        idle_p50, idle_p95 = percentile(idle, 0.5), percentile(idle, 0.95)
        self.report.line(
            f"drafts alone ({args.drafts} x {args.draft_tokens} tokens): "
            f"p50 {idle_p50 * 1000:.1f} ms, p95 {idle_p95 * 1000:.1f} ms"
        )
        loaded, bulk_tokens, seconds, draft_steps, detail = self.drafts_under_load(drafts)
        p50, p95 = percentile(loaded, 0.5), percentile(loaded, 0.95)
        ratio = p95 / idle_p95 if idle_p95 else 0.0
        self.report.line(
            f"drafts under load ({args.bulk_rows} candidate rows of up to {args.bulk_tokens} "
            f"tokens kept running, a draft every {args.draft_interval * 1000:.0f} ms): "
            f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms; candidates meanwhile "
            f"{bulk_tokens / seconds:,.0f} tokens/s; {draft_steps}"
        )
        self.report.line(f"  where a draft's time went under load: {detail}")
        verdict = "MEETS" if ratio <= DRAFT_RATIO_TARGET else "MISSES"
        self.report.target(
            f"draft p95 under load / idle: {ratio:.2f} (target <= {DRAFT_RATIO_TARGET}) -> "
            f"{verdict}"
        )

    def drafts_under_load(self, drafts: list) -> tuple[list[float], int, float, str, str]:
        """Latencies of `drafts` arriving every `--draft-interval` while candidates keep the
        session full; a draft's latency counts from when it was due, so the step in progress
        when it came is part of it."""
        from trainer_bridge.backends import Row

        args = self.args
        rng = random.Random(SEED)
        length = self.length(max(args.bulk_tokens, args.draft_tokens))
        arrivals: dict[object, float] = {}
        joins: dict[object, float] = {}
        latencies: list[float] = []
        waits: list[float] = []
        bulk_tokens = 0
        made = 0

        def bulk(count: int):
            nonlocal made
            rows = []
            for _ in range(count):
                # Candidates of different lengths, so they finish at different steps.
                tokens = rng.randint(max(1, args.bulk_tokens // 2), args.bulk_tokens)
                ids = self.prompt_ids[made % len(self.prompt_ids)]
                rows.append((("bulk", made), Row(ids, self.sampling(tokens), made)))
                made += 1
            return rows

        with self.generator.session(length=length) as session:
            target = min(args.bulk_rows, session.slots - session.reserve)
            session.add(bulk(target))
            in_flight = target
            session.step()
            started = time.perf_counter()
            next_draft = started
            sent = 0
            while len(latencies) < len(drafts):
                now = time.perf_counter()
                if sent < len(drafts) and now >= next_draft:
                    tag, row = drafts[sent]
                    arrivals[tag] = next_draft
                    session.add([(tag, row)])
                    sent += 1
                    next_draft += args.draft_interval
                if in_flight < target:
                    session.add(bulk(target - in_flight))
                    in_flight = target
                outcome = session.step()
                done = time.perf_counter()
                # Drafts sit in the first slots: which joined with this step.
                engine = session.engine
                for entry in engine.occupant[: engine.running_drafts]:
                    if entry is not None and entry.tag in arrivals and entry.tag not in joins:
                        joins[entry.tag] = done
                for finished in outcome.finished:
                    if finished.tag in arrivals:
                        arrived = arrivals.pop(finished.tag)
                        joined = joins.pop(finished.tag, done)
                        latencies.append(done - arrived)
                        waits.append(joined - arrived)
                    else:
                        bulk_tokens += finished.sample.completion_tokens
                        in_flight -= 1
                if outcome.failed:
                    raise RuntimeError(f"rows failed: {outcome.failed[:3]}")
            seconds = time.perf_counter() - started
            steps = session.sharing.draft_steps_per_bulk_step
            timing = session.sharing.step_seconds
            detail = (
                f"waiting to join (from when it was due to the end of the step it joined in) p50 "
                f"{percentile(waits, 0.5) * 1000:.1f} ms, p95 {percentile(waits, 0.95) * 1000:.1f} "
                f"ms; a draft-only step {timing['draft'] * 1000:.2f} ms, a step of the whole "
                f"batch with its joining {timing['full'] * 1000:.2f} ms, its decoding alone "
                f"{timing['decode'] * 1000:.2f} ms (moving averages); prefills at "
                f"{session.sharing.prefill_rate:,.0f} prompt tokens/s; "
                f"{session.splits} splits, row cap {session.row_cap:,} of {session.slots:,} "
                f"slots, {session.joined:,} rows joined in {engine.prefills:,} prefills so far"
            )
        return latencies, bulk_tokens, seconds, f"{steps} draft-only steps per full step", detail

    # transformers' generate

    def hf_inputs(self, rows: int):
        import torch

        ids = [self.prompt_ids[i % len(self.prompt_ids)] for i in range(rows)]
        width = max(len(x) for x in ids)
        pad = self.generator.pad_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + list(x) for x in ids])
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        return input_ids.to(self.device), attention.to(self.device), width

    def hf_generate(self, rows: int, tokens: int, **extra) -> tuple[float, int]:
        import torch

        input_ids, attention, width = self.hf_inputs(rows)
        eos = set(self.generator.eos_ids)
        torch.manual_seed(SEED)
        started = self.clock.now()
        with torch.inference_mode():
            output = self.generator.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                do_sample=True,
                temperature=TEMPERATURE,
                top_p=TOP_P,
                max_new_tokens=tokens,
                pad_token_id=self.generator.pad_id,
                eos_token_id=self.generator.eos_ids,
                **extra,
            )
        seconds = self.clock.now() - started
        generated = 0
        for row in output[:, width:].tolist():
            for token in row:
                if token in eos:
                    break
                generated += 1
        return seconds, generated

    def hf(self, name: str, workloads: list[tuple[int, int]], **extra) -> None:
        self.generator.engine.free()  # our cache gives its memory back for transformers
        self.hf_generate(2, 2)
        for rows, tokens in workloads:
            if self.report.past_deadline():
                self.report.line(f"{name} {rows} x {tokens}: skipped (past the deadline)")
                continue
            reset_peaks(self.device)
            first = ""
            if extra:
                # The first call compiles (on CUDA) and captures; it is timed apart.
                seconds, _ = self.hf_generate(rows, tokens, **extra)
                first = f"; first call (compilation included) {seconds:.1f} s"
                reset_peaks(self.device)
            seconds, generated = self.hf_generate(rows, tokens, **extra)
            memory, _ = memory_line(self.device)
            self.report.line(
                f"{name} {rows} x {tokens}: {generated:,} tokens in {seconds:.3f} s = "
                f"{generated / seconds:,.0f} tokens/s, {seconds / tokens * 1000:.2f} ms a "
                f"step{first}"
            )
            self.report.line(f"  {memory}")


def load_generator(args: argparse.Namespace, policy: Path):
    import torch

    from trainer_bridge.backends import LoadedGenerator
    from trainer_bridge.decoding import EngineSettings
    from trainer_bridge.loading import load_policy, quiet_progress_bars

    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    with quiet_progress_bars():
        tokenizer, model = load_policy(str(policy), dtype=dtype, device=args.device)
    tokenizer.padding_side = "left"
    generator = LoadedGenerator(
        tokenizer,
        model,
        device=args.device,
        settings=EngineSettings(
            cuda_graphs=not args.no_cuda_graphs, step_attention=args.step_attention
        ),
    )
    parameters = sum(p.numel() for p in model.parameters())
    card = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(
        f"model: {args.config_size} ({parameters / 1e6:.1f} M parameters, {dtype}, "
        f"{model.config._attn_implementation} attention) on {args.device} ({card}); "
        f"torch {torch.__version__}, transformers {_transformers_version()}; "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )
    return generator


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def main(args: argparse.Namespace) -> int:
    if args.smoke:
        args.workloads = "16x8,4x4"
        args.drafts, args.draft_tokens, args.draft_interval = 4, 8, 0.0
        args.bulk_rows, args.bulk_tokens = 32, 8
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(SECTIONS)
    if unknown:
        print(f"unknown sections to skip: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    report = Report(args.deadline_seconds)
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as scratch:
        model_dir = args.model_dir or Path(scratch) / "models" / args.config_size
        policy = build_policy(Path(model_dir), config_size=args.config_size)
        generator = load_generator(args, policy)
        suite = Suite(args, generator, report)
        print(
            f"workloads: {args.workloads} (rows x new tokens), temperature={TEMPERATURE}, "
            f"top_p={TOP_P}, seed={SEED}; load average {os.getloadavg()[0]:.2f} on "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        report.section("plan", set(), suite.plan)
        report.section("warm-up", set(), suite.warm_up)
        report.section("engine", skip, suite.engine)
        report.section("prefill", skip, suite.prefill)
        report.section("floor", skip, suite.floor)
        report.section("mixed", skip, suite.mixed)
        report.section("hf-eager", skip, lambda: suite.hf("hf-eager", suite.workloads))
        compiled = (
            parse_workloads(args.hf_compiled_workloads)
            if args.hf_compiled_workloads
            else suite.workloads
        )
        report.section(
            "hf-compiled",
            skip,
            lambda: suite.hf("hf-compiled", compiled, cache_implementation="static"),
        )
        report.line(f"\n== summary ({time.perf_counter() - report.started:.0f} s in all)")
        for text in report.lines:
            report.line(f"TARGET {text}")
    return 0
