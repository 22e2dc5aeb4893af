"""Whether this replica acts, by kopf's peering rule: a table over the peering object's status."""

from __future__ import annotations

import datetime

import pytest

from modelplane_operator.peering import acting, own_identity

NOW = datetime.datetime(2026, 11, 28, 12, 0, 0, tzinfo=datetime.timezone.utc)


def seen(seconds_ago: float, priority: int, lifetime: int = 20) -> dict:
    return {"priority": priority, "lifetime": lifetime,
            "lastseen": (NOW - datetime.timedelta(seconds=seconds_ago)).isoformat()}


@pytest.mark.parametrize("peers, expected", [
    ({}, True),  # no peering status yet
    ({"me": seen(1, 100)}, True),  # alone
    ({"me": seen(1, 100), "other": seen(1, 50)}, True),  # the other is lower
    ({"me": seen(1, 100), "other": seen(1, 200)}, False),  # a live higher one acts
    ({"me": seen(1, 100), "other": seen(30, 200)}, True),  # the higher one is dead (20 s lifetime)
    ({"me": seen(1, 100), "other": seen(1, 100)}, False),  # the same priority: kopf pauses both
    ({"other": {"priority": 200}}, False),  # no lastseen: kopf counts it as seen now
    ({"me": seen(1, 100), "other": "garbage"}, True),
])
def test_acting(peers, expected):
    assert acting(peers, "me", 100, NOW) is expected


def test_kopfs_own_timestamps_parse():
    assert acting({"other": {"priority": 200, "lifetime": 20, "lastseen": "2026-11-28T11:59:59.123456+00:00"}},
                  "me", 100, NOW) is False


def test_identities_differ_between_processes_on_one_host():
    assert own_identity() != own_identity()
