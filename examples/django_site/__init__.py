"""A Django project whose WebSocket side is a SocketRouter, without Channels.

Run it from the clone's root (Django 5.2 LTS or newer, the `stacks` extra):

    export DJANGO_SETTINGS_MODULE=examples.django_site.settings
    python -m django migrate
    python -m django createsuperuser
    uvicorn examples.django_site.asgi:application

`asgi.py` puts Django's ASGI handler and the router side by side; `sockets.py` admits the user
of Django's session cookie and serves the notes over the socket with the async ORM; `views.py`
publishes each note posted over HTTP to the sockets subscribed to it. The database is SQLite,
at `DJANGO_DB` (by default `examples/django_site/db.sqlite3`).
"""
