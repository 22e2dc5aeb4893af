"""Whether this replica acts, by kopf's own peering rule, read from the peering object. kopf's peering pauses only
kopf's watches; the children's events come from the operator's own stores, and a standby must not act on them."""

from __future__ import annotations

import datetime
import os
import socket
import uuid

DEFAULT_LIFETIME = 60  # seconds, as kopf assumes for a peer that does not say


def own_identity() -> str:
    """This process among the peers (kopf is given the same): the pod's name in a cluster, else the host's."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}/{uuid.uuid4().hex[:8]}"


def alive(info: dict, now: datetime.datetime) -> bool:
    lastseen = info.get("lastseen")
    if lastseen is None:
        return True  # kopf counts a peer without lastseen as seen now
    lifetime = datetime.timedelta(seconds=int(info.get("lifetime", DEFAULT_LIFETIME)))
    return datetime.datetime.fromisoformat(lastseen) + lifetime > now


def acting(peers: dict, me: str, priority: int, now: datetime.datetime) -> bool:
    """Pure. `peers`: the peering object's status (identity -> {priority, lifetime, lastseen}). kopf pauses a replica
    while another live peer has a higher priority, or the same one (then both pause, as kopf does)."""
    return not any(alive(info, now) and int(info.get("priority", 0)) >= priority
                   for identity, info in (peers or {}).items() if identity != me and isinstance(info, dict))
