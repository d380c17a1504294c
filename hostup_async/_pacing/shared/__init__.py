"""The shared rate limit: every client on one API key paced together through Redis.

- ``connect``: what ``shared_limit=`` accepts, and the key namespace.
- ``store.lua``: the script that stores and reserves in Redis (its contract at its top);
  ``script``: its Python client, with typed replies.
- ``policy``: the adaptive policy of the whole key, decided here on the key's logs.
- ``slots``: reserved send times held until a send takes them.
- ``fallback``: pacing alone while Redis is away, and rejoining.
- ``pacer``: ``SharedPacer``, the pacer contract on top of them.
"""

from .connect import namespace_for, redis_from
from .pacer import SharedPacer

__all__ = ["SharedPacer", "namespace_for", "redis_from"]
