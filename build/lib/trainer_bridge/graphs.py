"""CUDA graphs of the engine's decoding steps: captured once per worker and session length,
then replayed for every step.

A capture runs each step shape twice, a warm-up on a side stream and then the capture, with no
row in any slot, so it changes nothing a session holds. An engine's graphs share one memory
pool and are captured largest first, so the pool is sized once. A capture that fails is logged
with its reason and turns the graphs off: the engine then decodes eagerly.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from trainer_bridge.decoding import WarmUp

logger = logging.getLogger(__name__)


class StepGraphs:
    """The captured steps of one engine, by (session length, batch rows, attended columns)."""

    def __init__(self, device: str, *, enabled: bool) -> None:
        self.device = device
        self.enabled = enabled
        self.error = ""
        self.warmups: list[WarmUp] = []
        self._graphs: dict[tuple[int, int, int], Any] = {}
        self._lengths: set[int] = set()
        self._pool = None

    def captured(self, length: int) -> bool:
        return length in self._lengths

    def get(self, length: int, rows: int, columns: int):
        """The graph of a step of `rows` rows over `columns` columns, if one was captured."""
        return self._graphs.get((length, rows, columns)) if self.enabled else None

    def clear(self) -> None:
        self._graphs.clear()
        self._lengths.clear()
        self._pool = None

    def capture_length(
        self,
        length: int,
        *,
        shapes: list[tuple[int, int]],
        step: Callable[[int, int], None],
        reset: Callable[[], None],
    ) -> WarmUp:
        """Capture `step(rows, columns)` for every shape of a session length; `reset` empties
        the slots before each run and after the last."""
        import torch

        started = time.perf_counter()
        captured = 0
        shape = (0, 0)
        try:
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            stream = torch.cuda.Stream(device=self.device)
            for shape in sorted(shapes, key=lambda s: (s[1], s[0]), reverse=True):
                reset()
                stream.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(stream):
                    step(*shape)
                torch.cuda.current_stream(self.device).wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=self._pool):
                    step(*shape)
                self._graphs[(length, *shape)] = graph
                captured += 1
            torch.cuda.synchronize(self.device)
        except Exception as exc:  # a capture that fails must not stop generation
            self.error = f"{type(exc).__name__}: {exc}"
            self.enabled = False
            self._graphs.clear()
            logger.error(
                "CUDA graph capture failed at (rows, columns) %s after %d graphs; decoding "
                "eagerly instead.\n%s",
                shape, captured, traceback.format_exc(),
            )  # fmt: skip
        finally:
            reset()
        seconds = time.perf_counter() - started
        self._lengths.add(length)
        warm_up = WarmUp(length, captured, seconds, self.error)
        self.warmups.append(warm_up)
        logger.info(
            "Captured %d CUDA graphs for rows of up to %d tokens (up to %d rows) in %.1f s",
            captured, length, max((rows for rows, _ in shapes), default=0), seconds,
        )  # fmt: skip
        return warm_up

    def capture(self, run: Callable[[], Any]):
        """A graph of `run` (run once before, to warm up), in the shared pool."""
        import torch

        run()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            run()
        torch.cuda.synchronize(self.device)
        return graph
