"""A Python client session against the demo server: `python -m examples.client`.

Start the server first (`uvicorn examples.app:app`). This sums numbers, sends a fire-and-forget
message, asks for three clock ticks and prints them as they are pushed.
"""

from __future__ import annotations

import asyncio
import sys

from observable_socket_asgi.client import ConnectFailed, connect


async def main(url: str) -> None:
    async with connect(url, headers={"token": "abc"}, timeout=5.0) as sock:
        res = await sock.request("math/sum", [1, 2, 3, 4])
        print("math/sum ->", res.status, res.payload)

        await sock.send("echo", {"x": 1})  # fire and forget: its answer is dropped

        await sock.request("clock/ticks", 3)
        received = 0
        async for push in sock.pushes():
            print("push", push.route, push.payload)
            received += 1
            if received == 3:
                break


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/ws"
    try:
        asyncio.run(main(target))
    except ConnectFailed as exc:
        sys.exit(f"{exc} (is `uvicorn examples.app:app` running?)")
