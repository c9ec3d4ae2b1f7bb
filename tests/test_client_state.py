"""The client's lifecycle: the pure state machine, then the states a real client goes through."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import pytest

from observable_socket_asgi import SocketRouter
from observable_socket_asgi.client import ClientState, ConnectFailed, ConnectionClosed, connect
from observable_socket_asgi.client._state import MOVES, StateMachine
from tests.helpers import MS, TIMEOUT, refusing_port, running, wait_until

S = ClientState
LOGGER = "observable_socket_asgi.client"

LEGAL = [(old, new) for old, targets in MOVES.items() for new in sorted(targets)]
ILLEGAL = [(old, new) for old in S for new in S if new not in MOVES[old]]


def path_to(state: ClientState) -> list[ClientState]:
    """The shortest list of legal moves from CONNECTING to `state` (breadth first)."""
    paths: dict[ClientState, list[ClientState]] = {S.CONNECTING: []}
    todo = deque([S.CONNECTING])
    while todo:
        here = todo.popleft()
        for there in sorted(MOVES[here]):
            if there not in paths:
                paths[there] = [*paths[here], there]
                todo.append(there)
    return paths[state]


def machine_in(state: ClientState) -> StateMachine:
    machine = StateMachine("ws://test", logging.getLogger(LOGGER))
    for step in path_to(state):
        machine.move(step)
    assert machine.state is state
    return machine


# The pure machine


def test_a_machine_starts_connecting() -> None:
    """A new client is CONNECTING: nothing else has happened to it yet."""
    assert StateMachine("ws://test", logging.getLogger(LOGGER)).state is S.CONNECTING


def test_every_state_is_reachable_and_only_closed_is_final() -> None:
    """Each state can be reached from CONNECTING, and CLOSED alone has no way out."""
    assert [path_to(state)[-1:] for state in S if state is not S.CONNECTING] == [
        [state] for state in S if state is not S.CONNECTING
    ]
    assert [state for state in S if not MOVES[state]] == [S.CLOSED]


@pytest.mark.parametrize(("old", "new"), LEGAL, ids=[f"{o.name}-{n.name}" for o, n in LEGAL])
def test_every_legal_move_is_made_and_logged(
    old: ClientState, new: ClientState, caplog: pytest.LogCaptureFixture
) -> None:
    """A legal move changes the state, returns the one left and logs both at debug."""
    machine = machine_in(old)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert machine.move(new) is old
    assert machine.state is new
    [record] = caplog.records
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == f"client of ws://test: {old.name} -> {new.name}"


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=[f"{o.name}-{n.name}" for o, n in ILLEGAL])
def test_an_impossible_move_is_refused(old: ClientState, new: ClientState) -> None:
    """A move the table does not list raises, naming both states, and changes nothing."""
    machine = machine_in(old)
    with pytest.raises(RuntimeError, match=f"cannot go from {old.name} to {new.name}"):
        machine.move(new)
    assert machine.state is old


def test_the_states_are_ordered_by_life() -> None:
    """`closed` is `state >= CLOSING`: the ending states come last."""
    assert list(S) == sorted(S)
    assert [state for state in S if state >= S.CLOSING] == [S.CLOSING, S.CLOSED]


# A real client


def make_router() -> SocketRouter:
    router = SocketRouter()

    @router.route("echo")
    async def echo(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        return {"payload": payload}

    @router.route("leave")
    async def leave(ws: Any, headers: Any, payload: Any) -> dict[str, Any]:
        await ws.close(1001, "going away")
        return {}

    return router


def moves(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The moves the client logged, as `OLD -> NEW`."""
    return [
        r.getMessage().split(": ", 1)[1]
        for r in caplog.records
        if r.name == LOGGER and r.getMessage().startswith("client of ")
    ]


@pytest.mark.e2e
async def test_a_client_goes_through_its_life(caplog: pytest.LogCaptureFixture) -> None:
    """New, open, lost and reopened, then closed: each move happens once, in that order."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with running(make_router()) as server:
        sock = connect(server.url, timeout=TIMEOUT, backoff_initial=10 * MS)
        # by name: mypy would narrow `sock.state` to CONNECTING for the rest of the test
        assert sock.state.name == "CONNECTING" and not sock.connected and not sock.closed
        async with sock:
            assert sock.state is S.OPEN and sock.connected
            await sock.send("leave")  # the server closes with 1001: the client reconnects
            await wait_until(lambda: len(moves(caplog)) == 3, what="the reconnection")
            assert sock.state is S.OPEN
            assert (await sock.request("echo", 1)).payload == 1
        assert sock.state is S.CLOSED and sock.closed and not sock.connected
    assert moves(caplog) == [
        "CONNECTING -> OPEN",
        "OPEN -> RECONNECTING",
        "RECONNECTING -> OPEN",
        "OPEN -> CLOSING",
        "CLOSING -> CLOSED",
    ]


@pytest.mark.e2e
async def test_close_while_reconnecting_ends_the_wait(caplog: pytest.LogCaptureFixture) -> None:
    """close() during a long backoff goes CLOSING then CLOSED at once; requests then fail."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with running(make_router()) as server:
        sock = await connect(server.url, timeout=TIMEOUT, backoff_initial=100 * TIMEOUT).connect()
        await sock.send("leave")
        await wait_until(lambda: sock.state is S.RECONNECTING, what="the lost connection")
        assert not sock.connected and not sock.closed
        await sock.close()
        assert sock.state is S.CLOSED
        with pytest.raises(ConnectionClosed) as info:
            await sock.request("echo", 1)
        assert info.value.code == 1000
    assert moves(caplog)[-2:] == ["RECONNECTING -> CLOSING", "CLOSING -> CLOSED"]


@pytest.mark.e2e
async def test_a_refused_server_close_ends_closed() -> None:
    """Closed by the server with 1008: the client goes straight to CLOSED, never back."""

    def refuse(ws: Any) -> bool:
        return False

    with running(SocketRouter(access_logic=refuse)) as server:
        async with connect(server.url, backoff_initial=1 * MS, timeout=TIMEOUT) as sock:
            await wait_until(lambda: sock.state is S.CLOSED, what="the 1008 close")
            assert sock.close_code == 1008


@pytest.mark.e2e
async def test_a_failed_first_handshake_leaves_the_client_closed() -> None:
    """ConnectFailed on connect(): the client is CLOSED, requests fail, connect() is refused."""
    with refusing_port() as port:
        sock = connect(f"ws://127.0.0.1:{port}", timeout=TIMEOUT)
        with pytest.raises(ConnectFailed):
            await sock.connect()
    assert sock.state is S.CLOSED and sock.closed
    with pytest.raises(ConnectionClosed, match="connection refused"):
        await sock.request("echo", 1)
    with pytest.raises(RuntimeError, match="CLOSED"):
        await sock.connect()
    await sock.close()
    assert sock.state is S.CLOSED
