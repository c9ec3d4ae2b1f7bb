"""The handshake views (`ws.headers`, `ws.query_params`, `ws.state`, cookies): pure, no loop."""

from __future__ import annotations

import pytest

from observable_socket_asgi.datastructures import (
    Address,
    Headers,
    QueryParams,
    State,
    parse_cookies,
)


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    """Lookup ignores case; the first value wins; getlist() and raw() keep every one."""
    headers = Headers([(b"X-Token", b"a"), (b"x-token", b"b"), (b"Host", b"example")])
    assert headers["x-TOKEN"] == "a"
    assert headers.getlist("X-Token") == ["a", "b"]
    not_a_name: object = 3
    assert "HOST" in headers and "cookie" not in headers and not_a_name not in headers
    assert list(headers) == ["x-token", "host"] and len(headers) == 2
    assert headers.raw() == [("x-token", "a"), ("x-token", "b"), ("host", "example")]
    assert headers.get("missing") is None
    with pytest.raises(KeyError):
        headers["missing"]
    assert "x-token" in repr(headers)


def test_headers_decode_latin1_and_default_to_empty() -> None:
    """Header bytes are latin-1 (as the HTTP spec has it); no headers is an empty mapping."""
    assert Headers([(b"x", "é".encode("latin-1"))])["x"] == "é"
    assert len(Headers()) == 0 and dict(Headers(None)) == {}


def test_query_params_last_value_wins_and_blanks_are_kept() -> None:
    """A repeated key reads its last value; getlist() has all; empty values stay."""
    params = QueryParams(b"a=1&b=&a=2&c=%20x")
    assert params["a"] == "2" and params.getlist("a") == ["1", "2"]
    assert params["b"] == "" and params["c"] == " x"
    assert list(params) == ["a", "b", "c"] and len(params) == 3
    assert QueryParams("k=v")["k"] == "v"
    assert dict(QueryParams()) == {}
    assert "('a', '1')" in repr(params)


def test_state_reads_and_writes_the_scope_dict() -> None:
    """`ws.state.user = x` writes `scope["state"]["user"]`, and a missing name is AttributeError."""
    backing: dict[str, object] = {"user": "ada"}
    state = State(backing)
    assert state.user == "ada"
    state.role = "admin"
    assert backing == {"user": "ada", "role": "admin"}
    del state.user
    assert backing == {"role": "admin"}
    with pytest.raises(AttributeError, match="'State' object has no attribute 'user'"):
        state.user  # noqa: B018 - the read is the test


def test_parse_cookies_as_browsers_send_them() -> None:
    """Pairs split on `;`, spaces trimmed, quoted values unquoted, a bare value has no name."""
    assert parse_cookies('session=abc; theme="dark"; bare; empty=') == {
        "session": "abc",
        "theme": "dark",
        "": "bare",
        "empty": "",
    }
    assert parse_cookies("") == {}
    assert parse_cookies("a=1;a=2") == {"a": "2"}


def test_address_is_a_named_pair() -> None:
    """`ws.client` unpacks as (host, port) and reads by name."""
    host, port = Address("127.0.0.1", 5000)
    assert (host, port) == ("127.0.0.1", 5000)
    assert Address("h", 1).port == 1
