"""A guard between a train worker and the training processes it starts (standard library only).

    python -m trainer_bridge.training_guard -- COMMAND [ARGS...]

runs COMMAND in a process group of its own and ends that whole group (the accelerate launcher and
every process it started) as soon as its standard input reaches end-of-file, which happens when
the worker closes it to cancel the run and when the worker dies for any reason, SIGKILL included:
the kernel closes a dead process's pipes. Without it a killed worker would leave the training
running as an orphan beside the attempt the watchdog starts next. Exits with COMMAND's status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading

GRACE_SECONDS = 10.0


def _end_group(child: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the child's group, SIGKILL to what is left of it after `grace` seconds."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "--" or len(argv) < 2:
        print(
            "usage: python -m trainer_bridge.training_guard -- COMMAND [ARGS...]", file=sys.stderr
        )
        return 2
    child = subprocess.Popen(argv[1:], stdin=subprocess.DEVNULL, start_new_session=True)  # noqa: S603
    stopped = threading.Event()

    def watch_stdin() -> None:
        # The raw descriptor, not sys.stdin: a daemon thread blocked in a buffered read holds
        # its lock, which the interpreter then fails to take at exit.
        try:
            while os.read(0, 1024):
                pass
        except OSError:
            pass
        if child.poll() is None:
            stopped.set()
            print("training_guard: the worker went away; stopping the training.", flush=True)
            _end_group(child, GRACE_SECONDS)

    def on_signal(signum, frame) -> None:
        stopped.set()
        threading.Thread(target=_end_group, args=(child, GRACE_SECONDS), daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=watch_stdin, name="guard-stdin", daemon=True).start()
    status = child.wait()
    if stopped.is_set():
        # The launcher is gone; what it started may not be yet.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        # Whatever the launcher's own status, a stopped run did not finish.
        return status if status != 0 else 143
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
