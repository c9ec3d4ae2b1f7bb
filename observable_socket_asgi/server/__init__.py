"""The serving machinery: `SocketRouter` (the ASGI app), the handshake and scope dispatch, the
per-connection I/O shell, the pipeline that turns a request into a reply, and the bounded
executor that sync hooks and handlers run on.
"""
