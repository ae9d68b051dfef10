"""Django settings of the test project: the least that serves requests, DEBUG off.

With ``DEBUG = False`` an error in a view gets Django's plain 500 page (what production
serves), and only the hosts the tests use are allowed.
"""

from __future__ import annotations

SECRET_KEY = "txgreen-tests-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "django_app.urls"
INSTALLED_APPS: list[str] = []
# No CSRF middleware: the tests post forms and files as an API client would, without a token.
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict[str, object] = {}
USE_TZ = True
# Uploads above this many bytes go to a temporary file, not memory (Django's default, stated).
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# Behind a reverse proxy that terminates TLS: trust its X-Forwarded-Proto for request.scheme
# (Django has no setting for X-Forwarded-For: REMOTE_ADDR stays the proxy's address).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
