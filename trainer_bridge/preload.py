"""A generation worker's models, loaded and warmed up as the worker starts.

Loading a model and capturing its CUDA graphs takes seconds to minutes; left to the first
request of each model and session length, a trainer's draft waits for it. With
PARLEY_GENERATION_PRELOAD set, a worker that serves the generation queue does both as its
process starts, before it takes a task:

- "recent": the models (up to MAX_LOADED_MODELS) with the most generation requests in the last
  RECENT_DAYS days;
- "12,15": these model versions, by id.

Each is warmed up (its KV cache allocated and, on CUDA, the graphs of every batch size
captured) for the session lengths its requests of the last RECENT_DAYS days needed, or, with
none, for a prompt of PROMPT_ALLOWANCE tokens and MAX_NEW_TOKENS new ones. What was loaded and
captured, and how long each took, is logged, one line a model. A model that fails to load is
logged with the reason and skipped: the worker still starts.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from annotations.models import ModelVersion
from trainer_bridge.backends import model_cache
from trainer_bridge.decoding import WarmUp
from trainer_bridge.kv_cache import length_bucket
from trainer_bridge.models import GenerationRequest
from trainer_bridge.watchdog import GENERATION_QUEUE

logger = logging.getLogger(__name__)

RECENT_DAYS = 7
PROMPT_ALLOWANCE = 256
# The queues this worker consumes, as its command line named them: set before its pool's
# processes start, so each of them (forked or spawned) can tell whether it generates.
QUEUES_VARIABLE = "PARLEY_WORKER_QUEUES"


class PreloadError(ValueError):
    """PARLEY_GENERATION_PRELOAD names nothing that can be loaded."""


@dataclass(frozen=True)
class PreloadTarget:
    model_version: ModelVersion
    lengths: list[int]  # session lengths to warm up (buckets)


@dataclass(frozen=True)
class Preloaded:
    """What preloading one model did."""

    model: str
    lengths: list[int]
    load_seconds: float = 0.0
    warmups: list[WarmUp] = field(default_factory=list)
    error: str = ""

    def describe(self) -> str:
        if self.error:
            return f"Could not preload {self.model}: {self.error}"
        graphs = sum(w.graphs for w in self.warmups)
        warm = sum(w.seconds for w in self.warmups)
        failed = [w.error for w in self.warmups if w.error]
        return (
            f"Preloaded {self.model} in {self.load_seconds:.1f} s; warmed up for sessions of "
            f"{', '.join(map(str, self.lengths))} tokens in {warm:.1f} s ({graphs} CUDA graphs)"
            + (f"; graph capture failed, decoding eagerly: {failed[0]}" if failed else "")
        )


def preload_targets(
    spec: str, *, capacity: int, max_new_tokens: int, now: datetime | None = None
) -> list[PreloadTarget]:
    """The models `spec` (PARLEY_GENERATION_PRELOAD) names, at most `capacity`, each with the
    session lengths to warm it up for. PreloadError says what is wrong with `spec`."""
    spec = spec.strip()
    if not spec:
        return []
    since = (now or timezone.now()) - timedelta(days=RECENT_DAYS)
    recent = GenerationRequest.objects.filter(queued_at__gte=since)
    if spec == "recent":
        ids = list(
            recent.values("model_version")
            .annotate(requests=Count("id"))
            .order_by("-requests", "model_version")
            .values_list("model_version", flat=True)[:capacity]
        )
    else:
        try:
            ids = list(dict.fromkeys(int(part) for part in spec.split(",") if part.strip()))
        except ValueError:
            raise PreloadError(
                f"PARLEY_GENERATION_PRELOAD must be 'recent' or model version ids separated by "
                f"commas, not {spec!r}."
            ) from None
        if len(ids) > capacity:
            raise PreloadError(
                f"PARLEY_GENERATION_PRELOAD names {len(ids)} models; a worker keeps at most "
                f"{capacity} loaded (PARLEY_MAX_LOADED_MODELS)."
            )
    versions = ModelVersion.objects.in_bulk(ids)
    missing = [str(pk) for pk in ids if pk not in versions]
    if missing:
        raise PreloadError(f"PARLEY_GENERATION_PRELOAD: no model version {', '.join(missing)}.")
    fallback = [length_bucket(PROMPT_ALLOWANCE + max_new_tokens)]
    return [
        PreloadTarget(versions[pk], _session_lengths(recent.filter(model_version=pk)) or fallback)
        for pk in ids
    ]


def _session_lengths(requests) -> list[int]:
    """The session lengths (buckets) requests like these needed: prompt and new tokens."""
    needed = (
        requests.exclude(prompt_tokens=None)
        .values_list("prompt_tokens", "params__max_new_tokens")
        .distinct()
    )
    return sorted({length_bucket(prompt + new) for prompt, new in needed if isinstance(new, int)})


def preload(spec: str, *, device: str) -> list[Preloaded]:
    """Load and warm up the models `spec` names on `device`, through this process's model cache
    (where requests find them); logs and returns what each took."""
    config = settings.PARLEY["GENERATION"]
    cache = model_cache()
    try:
        targets = preload_targets(
            spec, capacity=cache.capacity, max_new_tokens=config["MAX_NEW_TOKENS"]
        )
    except PreloadError as exc:
        logger.error("%s Nothing was preloaded.", exc)
        return []
    except Exception:  # the database away, say: the worker starts, and loads on first use
        logger.exception("Could not tell which models to preload; nothing was preloaded.")
        return []
    done: list[Preloaded] = []
    for target in targets:
        name = str(target.model_version)
        started = time.perf_counter()
        try:
            generator = cache.get(target.model_version, device=device)
            loaded = time.perf_counter() - started
            warmups = generator.engine.warm_up(target.lengths)
        except Exception as exc:  # a model that cannot load must not keep the worker down
            result = Preloaded(name, target.lengths, error=f"{type(exc).__name__}: {exc}")
            logger.exception(result.describe())
        else:
            result = Preloaded(name, target.lengths, loaded, warmups)
            logger.info(result.describe())
        done.append(result)
    return done


# --- Celery's worker signals (connected in TrainerBridgeConfig.ready) ----------------------------


def on_worker_init(sender=None, conf=None, options=None, **_) -> None:
    """celeryd_init: note the queues this worker consumes for its processes, and give a
    process that preloads time to do so before Celery counts it as failed to start."""
    queues = (options or {}).get("queues") or []
    if isinstance(queues, str):
        queues = queues.split(",")
    os.environ[QUEUES_VARIABLE] = ",".join(q.strip() for q in queues)
    spec = settings.PARLEY["GENERATION"]["PRELOAD"]
    if spec and conf is not None and generates():
        timeout = settings.PARLEY["GENERATION"]["PRELOAD_TIMEOUT_SECONDS"]
        conf.worker_proc_alive_timeout = max(conf.worker_proc_alive_timeout or 0, timeout)


def generates() -> bool:
    """Whether this worker consumes the generation queue (a worker started without -Q
    consumes every queue)."""
    queues = [q for q in os.environ.get(QUEUES_VARIABLE, "").split(",") if q]
    return not queues or GENERATION_QUEUE in queues


def on_worker_process_init(**_) -> list[Preloaded]:
    """worker_process_init: preload in a process of a worker that generates."""
    spec = settings.PARLEY["GENERATION"]["PRELOAD"]
    if not spec or not generates():
        return []
    return preload(spec, device=settings.PARLEY["GENERATION_DEVICE"])
