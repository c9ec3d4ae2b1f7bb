"""Topics and everything that travels with a push: the backplane interface and its in-memory
and Redis transports, push history and resume positions, presence, run-once idempotency, and
the Redis outage log rule.
"""
