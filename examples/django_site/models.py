"""A note, written by a user: what the sockets and the views read and write."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class Note(models.Model):
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.CharField(max_length=500)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def as_dict(self) -> dict[str, Any]:
        """The note as the sockets and the views send it (`author` must be loaded)."""
        return {"id": self.pk, "text": self.text, "author": self.author.get_username()}
