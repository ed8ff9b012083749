"""API rate limits that keep serving when their cache is away.

The counters live in the shared cache (Redis in production). A cache that cannot be reached (a
restart, a failover) lets requests through unthrottled for that moment, logged, rather than
failing every API call with a 500: the limits guard against abuse, and a short outage of them
costs less than an outage of the site.
"""

import logging

from redis.exceptions import RedisError
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)

CACHE_UNAVAILABLE = (RedisError, OSError)


class _OpenWhenCacheIsDown:
    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except CACHE_UNAVAILABLE as exc:
            logger.warning("Rate-limit cache unavailable; %s not throttled: %s", request.path, exc)
            return True


class AnonThrottle(_OpenWhenCacheIsDown, AnonRateThrottle):
    pass


class UserThrottle(_OpenWhenCacheIsDown, UserRateThrottle):
    pass
