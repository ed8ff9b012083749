"""Handing work to the Celery broker in a way a broker outage cannot break.

The database is the record of what is queued (a generation request or an export in state
"queued"); the broker only carries the wake-up call. So a send that fails (Redis restarting,
unreachable) is logged and left to the watchdogs, which send again what is queued in the
database while its queue on the broker holds nothing (`queue_depth`). Tasks are idempotent, so a
message sent twice does its work once.
"""

import logging
from collections.abc import Callable

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerUnavailable

logger = logging.getLogger(__name__)


def send_after_commit(send: Callable[[], object], *, what: str) -> None:
    """Call `send` (e.g. `task.delay(...)`) once the transaction commits; a broker that is down
    is logged, not raised: the request that queued the work has already succeeded."""

    def send_now() -> None:
        try:
            send()
        except (BrokerUnavailable, OSError) as exc:
            logger.warning("Broker unavailable; the watchdog will send %s: %s", what, exc)

    transaction.on_commit(send_now)


def queue_depth(queue: str) -> int | None:
    """How many messages wait in `queue` on the broker; None when the broker cannot say."""
    try:
        with current_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            return connection.default_channel.queue_declare(queue=queue, passive=False)[1]
    except (BrokerUnavailable, OSError, NotImplementedError) as exc:
        logger.warning("Could not read the depth of queue %r: %s", queue, exc)
        return None
