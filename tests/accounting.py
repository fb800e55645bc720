"""The accounting identities every ``summary.json`` must satisfy (README, "Accounting")."""

from __future__ import annotations

from typing import Any


def assert_accounted(summary: dict[str, Any]) -> None:
    """Every session and every message has exactly one outcome; unfinished ones are counted by phase."""
    c = summary["counts"]
    assert c["sessions_started"] == c["sessions_completed"] + c["sessions_failed"] + c["sessions_unfinished"], c
    assert c["messages_sent"] == (
        c["messages_accepted"] + c["messages_rejected"] + c["messages_failed"] + c["messages_unfinished"]
    ), c
    assert sum(summary["unfinished"].values()) == c["sessions_unfinished"], (summary["unfinished"], c)
    assert set(summary["unfinished_min_wait_us"]) == set(summary["unfinished"])
    waited = summary["phases"].get("unfinished_wait", {"count": 0})["count"]
    assert waited == c["sessions_unfinished"], (waited, c)
    if "arrivals_dropped" in c:
        assert c["arrivals_intended"] == c["sessions_started"] + c["arrivals_dropped"], c
