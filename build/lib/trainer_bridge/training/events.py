"""A run's events: JSON lines appended to a file and, optionally, POSTed to Parley's API.

Event shapes (one JSON object per line):

    {"type": "started", "stage": "rm", "rows": {"train": 180, "validation": 20,
     "dropped_too_long": 3}}
    {"type": "metrics", "step": 12, "values": {"loss": 0.41, "accuracy": 0.93, ...}}
    {"type": "log", "message": "..."}
    {"type": "finished", "state": "succeeded", "output": "DIR", "summary": {...}}
    {"type": "finished", "state": "failed", "error": "what went wrong"}

Reporting is never fatal for training: a POST that fails is retried, then kept and sent again
with the next event; the file is the record that always exists. Only the main process of a
distributed launch writes (the others get a disabled sink). Standard library only.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

RUN_TOKEN_ENV = "PARLEY_RUN_TOKEN"  # noqa: S105 - the variable's name, not a secret
AUTH_SCHEME = "RunToken"
# Events waiting for the API beyond this are dropped (the file still has them).
MAX_PENDING = 10_000


def is_main_process() -> bool:
    """Whether this is rank 0 of a launch (accelerate and torchrun set RANK; plain runs do not)."""
    return os.environ.get("RANK", "0") == "0"


def finite_json(value: Any) -> Any:
    """`value` with NaN and infinities replaced by None, so every line is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


class EventSink:
    """Appends events to `path` and POSTs them to `report_url` with the run's token."""

    def __init__(
        self,
        path: Path | str | None,
        *,
        report_url: str | None = None,
        token: str | None = None,
        enabled: bool = True,
        attempts: int = 3,
        timeout: float = 10.0,
        backoff: float = 0.5,
    ) -> None:
        self.path = Path(path) if path else None
        self.report_url = report_url or None
        self.token = token if token is not None else os.environ.get(RUN_TOKEN_ENV, "")
        self.enabled = enabled
        self.attempts = max(1, attempts)
        self.timeout = timeout
        self.backoff = backoff
        self.pending: list[dict[str, Any]] = []
        self.report_failures = 0
        self._reporting_down = False
        if self.enabled and self.report_url and not self.token:
            _warn(f"--report-url is set but {RUN_TOKEN_ENV} is empty; the API will refuse events")
        if self.enabled and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    # --- the event kinds ------------------------------------------------------------------

    def started(self, stage: str, rows: dict[str, int]) -> None:
        self.emit({"type": "started", "stage": stage, "rows": rows})

    def metrics(self, step: int, values: dict[str, float]) -> None:
        if values:
            self.emit({"type": "metrics", "step": int(step), "values": values})

    def log(self, message: str) -> None:
        self.emit({"type": "log", "message": message})

    def succeeded(self, output: str, summary: dict[str, Any]) -> None:
        self.emit(
            {"type": "finished", "state": "succeeded", "output": output, "summary": summary},
            final=True,
        )

    def failed(self, error: str) -> None:
        self.emit({"type": "finished", "state": "failed", "error": error}, final=True)

    # --- writing and reporting ------------------------------------------------------------

    def emit(self, event: dict[str, Any], *, final: bool = False) -> None:
        if not self.enabled:
            return
        event = finite_json(event)
        line = json.dumps(event, allow_nan=False, ensure_ascii=False)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
                if final:
                    os.fsync(handle.fileno())
        if self.report_url:
            self.pending.append(event)
            del self.pending[:-MAX_PENDING]
            self.flush(attempts=self.attempts + 2 if final else None)

    def flush(self, *, attempts: int | None = None) -> bool:
        """Send the pending events as one batch; True when the API took them (or none wait)."""
        if not self.report_url or not self.pending:
            return True
        # While the API is unreachable, each event tries once without waiting, so training is
        # not slowed by retries; the final event gets the full count again.
        if attempts is None:
            attempts = 1 if self._reporting_down else self.attempts
        batch = list(self.pending)
        for attempt in range(attempts):
            outcome = self._post(batch)
            if outcome == "ok":
                del self.pending[: len(batch)]
                self._reporting_down = False
                return True
            if outcome == "refused":
                # The API understood and said no (bad token, unknown run): retrying cannot help.
                del self.pending[: len(batch)]
                return False
            if attempt + 1 < attempts:
                time.sleep(self.backoff * 2**attempt)
        self._reporting_down = True
        return False

    def _post(self, batch: list[dict[str, Any]]) -> str:
        body = json.dumps({"events": batch}, allow_nan=False).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 - the URL is Parley's own, from the backend
            self.report_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"{AUTH_SCHEME} {self.token}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                response.read()
            return "ok"
        except urllib.error.HTTPError as error:
            self.report_failures += 1
            _warn(f"reporting events to {self.report_url} failed: HTTP {error.code}")
            if 400 <= error.code < 500 and error.code not in (408, 429):
                return "refused"
            return "retry"
        except (OSError, ValueError) as error:
            self.report_failures += 1
            _warn(f"reporting events to {self.report_url} failed: {error}")
            return "retry"


def _warn(message: str) -> None:
    print(f"parley-training: {message}", file=sys.stderr, flush=True)
