"""The views of the Django test project (the same routes as the Flask app, see :mod:`apps`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import app_logic as work
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    JsonResponse,
    StreamingHttpResponse,
)

_View = Callable[..., HttpResponse]


def _allow(*methods: str) -> Callable[[_View], _View]:
    """Like Django's ``require_http_methods`` (405 for other methods), typed for mypy."""

    def decorate(view: _View) -> _View:
        @functools.wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return HttpResponseNotAllowed(methods)
            return view(request, *args, **kwargs)

        return checked

    return decorate


@_allow("GET")
def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("django home\n", content_type="text/plain; charset=utf-8")


@_allow("GET")
def hello(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse(f"hello, {name}\n", content_type="text/plain; charset=utf-8")


@_allow("GET", "POST")
def json_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return JsonResponse(work.total(json.loads(request.body)))
    return JsonResponse({"framework": "django", "items": [1, 2, 3]})


@_allow("POST")
def form(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"fields": {key: request.POST.getlist(key) for key in request.POST}})


@_allow("POST")
def upload(request: HttpRequest) -> HttpResponse:
    uploaded = request.FILES["file"]
    summary = work.file_summary(uploaded.name or "", uploaded.chunks(work.UPLOAD_BLOCK))
    return JsonResponse({**summary, "note": request.POST.get("note", "")})


@_allow("GET")
def stream(request: HttpRequest) -> HttpResponse:
    n = int(request.GET.get("n", work.STREAM_CHUNKS))
    delay = float(request.GET.get("delay", "0.05"))
    fail_after = request.GET.get("fail_after")
    body = work.chunks(n, delay, None if fail_after is None else int(fail_after))
    return StreamingHttpResponse(body, content_type="text/plain; charset=utf-8")


@_allow("GET")
def download(request: HttpRequest) -> HttpResponse:
    body = work.download(int(request.GET["size"]))
    return StreamingHttpResponse(body, content_type="application/octet-stream")


@_allow("GET")
def error(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("this view fails on purpose")


@_allow("GET")
def wait(request: HttpRequest) -> HttpResponse:
    seconds = float(request.GET.get("seconds", "0.05"))
    return JsonResponse(work.wait_on_reactor(seconds, request.META))


@_allow("GET")
def relay(request: HttpRequest) -> HttpResponse:
    base = f"{request.scheme}://{request.META['SERVER_NAME']}:{request.META['SERVER_PORT']}"
    return JsonResponse(work.relay(base, request.GET["path"]))


@_allow("GET")
def thread(request: HttpRequest) -> HttpResponse:
    return JsonResponse(work.in_thread(request.GET.get("data", "").encode()))


@_allow("GET")
def client(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"remote_addr": request.META.get("REMOTE_ADDR"), "scheme": request.scheme})
