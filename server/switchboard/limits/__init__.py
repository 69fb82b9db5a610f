"""Rate limits: the Python face of the native sliding-window limiter.

The classes are the native ones from ``switchboard._ratelimit``, re-exported
as they are, so nothing written in Python sits on the admission path::

    limiter = RateLimiter(window_seconds=60.0)
    limiter.configure("deployment:a", rpm=500, tpm=200_000)
    result = limiter.try_acquire(["deployment:a", "key:3f2a"], tokens=1_200)
    # or, resolving each key once, for the hot path (docs/limiter.md):
    a, caller = limiter.handle("deployment:a"), limiter.handle("key:3f2a")
    result = limiter.try_acquire((a, caller), tokens=1_200)
    if not result:                      # Denied is falsy, Ticket truthy
        wait(result.retry_after)        # math.inf and result.never: never fits
    else:
        ...                             # call the provider, then exactly one of:
        limiter.commit(result, actual_tokens=950)
        limiter.release(result)         # the call never reached the provider

Semantics (docs/limiter.md has the algorithm and its bounds):

- ``now`` is seconds on the clock of ``time.monotonic()``; ``None`` reads it.
  A key's time never goes backwards: an earlier ``now`` runs at the latest.
- Unconfigured keys are unlimited; a key named twice counts once.
- A ``Handle`` means what its key's name means whenever it is used (a key
  configured after the handle was taken is limited from then on); a handle of
  another limiter raises ``ValueError``.
- Committing or releasing a ticket a second time raises ``ValueError`` and
  changes nothing; so does a ticket from another limiter.
- Nonsense (limits below 1, negative tokens, a non-finite or non-positive
  window, a non-finite ``now``) raises ``ValueError``.
"""

from switchboard._ratelimit import Denied, Handle, RateLimiter, Ticket
from switchboard._ratelimit import version as native_version

__all__ = ["Denied", "Handle", "RateLimiter", "Ticket", "native_version"]
