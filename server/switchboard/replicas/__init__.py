"""Cooldowns and latency samples shared between gateway replicas through Redis.

`ReplicaSync` (sync.py) is the face and says how it works; `events.py` is
the wire format and its validation, `store.py` the layout in Redis.
"""

from switchboard.replicas.sync import ReplicaSync, ReplicaSyncStatus

__all__ = ["ReplicaSync", "ReplicaSyncStatus"]
