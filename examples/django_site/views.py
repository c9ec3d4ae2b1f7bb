"""Django views: the notes over HTTP; a note posted here is pushed to the sockets too."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from .models import Note
from .sockets import NOTES, router


@require_GET
@ensure_csrf_cookie  # a page a browser loads first: it gets the token its POST must send
async def notes(request: HttpRequest) -> HttpResponse:
    """The ten latest notes, everyone's."""
    latest = Note.objects.select_related("author")[:10]
    return JsonResponse({"notes": [note.as_dict() async for note in latest]})


@require_POST
@login_required
async def post_note(request: HttpRequest) -> HttpResponse:
    """Save the posted note, then push it to every socket subscribed to `notes`.

    `router.publish` is awaited in the view: the push is on its way to every subscriber of
    this process (and, with a Redis backplane, of the others) when the response is sent.
    """
    text = request.POST.get("text", "")
    if not 0 < len(text) <= 500:
        return JsonResponse({"error": "text: 1 to 500 characters"}, status=400)
    user = await request.auser()
    note = await Note.objects.acreate(author=user, text=text)
    payload = note.as_dict()
    await router.publish(NOTES, payload)
    return JsonResponse({"note": payload}, status=201)
