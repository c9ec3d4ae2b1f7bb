"""The project's URLs (the socket is not one: asgi.py routes WebSocket handshakes)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("notes/", views.notes, name="notes"),
    path("notes/new", views.post_note, name="post-note"),
]
