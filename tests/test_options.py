"""The option groups: built from the router's keywords, each checking its own fields."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from observable_socket_asgi import SocketRouter, options


def test_group_takes_its_prefixed_keywords_and_keeps_other_defaults() -> None:
    """`group()` picks `prefix + field` from the keywords; a field without one keeps its default."""
    keywords = {"history_size": 5, "history_ttl": 9.0, "max_in_flight": 3, "size": 99}
    history = options.group(options.HistoryOptions, keywords, "history_")
    assert history == options.HistoryOptions(size=5, ttl=9.0)
    assert options.group(options.Settings, keywords).max_in_flight == 3
    assert options.group(options.PresenceOptions, {}, "presence_") == options.PresenceOptions()


def test_the_router_builds_its_groups_from_its_keywords() -> None:
    """What a router was given is read back from its frozen groups and its runtime."""
    router = SocketRouter(
        max_topics=7, allowed_origins=["https://a.example"], asyncapi_url="/doc.json"
    )
    assert router.settings.max_topics == 7
    assert router.settings.allowed_origins == ("https://a.example",)  # any iterable: a tuple
    assert router.paths == options.HttpPaths(asyncapi_url="/doc.json")
    assert router.runtime.settings is router.settings
    with pytest.raises(FrozenInstanceError):
        router.settings.max_topics = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    ("keywords", "named"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_message_bytes": 10}, "max_message_bytes"),
        ({"slow_consumer": "hurry"}, "slow_consumer"),
        ({"retry_after": True}, "retry_after"),
        ({"max_validation_errors": 0}, "max_validation_errors"),
        ({"history_size": -1}, "history_size"),
        ({"presence_max_info_bytes": 1}, "presence_max_info_bytes"),
        ({"idempotency_ttl": 0}, "idempotency_ttl"),
        ({"metrics_url": "metrics"}, "metrics_url"),
        ({"explorer_url": "/explorer/"}, "explorer_url"),
    ],
)
def test_a_bad_keyword_is_refused_by_name(keywords: dict[str, Any], named: str) -> None:
    """Each group names the router keyword a mistake came from."""
    with pytest.raises(ValueError, match=named):
        SocketRouter(**keywords)


def test_a_non_callable_identity_is_a_type_error() -> None:
    """`idempotency_identity` must be callable."""
    with pytest.raises(TypeError, match="idempotency_identity"):
        options.IdempotencyOptions(identity="user")  # type: ignore[arg-type]
