"""Topics and everything that travels with a push: the `Topics` hub (registry, sliced fan-out,
replay, presence) over a transport interface (`Backplane`) with its in-memory and Redis
transports; push history and resume positions, presence, run-once idempotency, and the Redis
outage log rule. Nothing here imports the server: a connection is a `Subscriber`.
"""
