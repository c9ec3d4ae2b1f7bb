"""Settings of the example project: Django's defaults, SQLite, sessions in the database."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

# Set DJANGO_SECRET_KEY anywhere but on your own machine: it signs the sessions.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-example-only")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "examples.django_site",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "examples.django_site.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB", str(BASE_DIR / "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# The pages allowed to open a socket: the session cookie rides on every handshake a browser
# makes, from any site, so without this list any page could act as the user (cross-site
# WebSocket hijacking). Put your site's origins here.
SOCKET_ALLOWED_ORIGINS = ["http://localhost:8000", "http://127.0.0.1:8000"]
