"""The views of the real applications (Flask, Django), framework aside: plain sync code.

tests/web/apps holds a Flask application (:mod:`flask_app`, ``flask_app:app``) and a small
Django project (:mod:`django_app`, ``django_app.wsgi:application``) that the serving tests
(tests/web/test_real_apps.py, test_http2.py) run under each kind of txgreen server. Both answer
the same routes the same way, their views built on this module:

===================  ========================================================================
``GET /``            a plain-text home page
``GET /hello/NAME``  routing with a path parameter: ``hello, NAME``
``GET /json``        a JSON document; ``POST /json`` echoes the JSON it gets, with a sum
``POST /form``       a URL-encoded form: its fields as JSON
``POST /upload``     a multipart upload (field ``file``): its name, size and SHA-256 as JSON
``GET /stream``      a streamed body: ``n`` chunks from a generator, ``delay`` s apart (with
                     ``fail_after=K`` the generator raises after K chunks)
``GET /download``    ``size`` bytes, streamed in 64 KiB blocks (:class:`Progress` counts them)
``GET /error``       the view raises: the framework's own 500 page
``GET /wait``        waits ``seconds`` on a Twisted timer with ``txgreen.block_on``
``GET /relay``       fetches ``path`` from this same server with Twisted's ``Agent``
``GET /thread``      runs blocking code in a thread pool with ``txgreen.call_in_thread``
``GET /client``      the client address and URL scheme the framework sees (proxy headers)
===================  ========================================================================

Each request runs in a green thread of its own (txgreen's WSGI container), so these functions
may wait on Twisted (:func:`txgreen.block_on`) or on an OS thread
(:func:`txgreen.call_in_thread`) and only their own request waits.

The modules are top-level ones in tests/web/apps, like the gunicorn tests' apps there: a server
in a subprocess gets ``--chdir tests/web/apps``, and the tests put that folder on ``sys.path``.
"""

from __future__ import annotations

import hashlib
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import IO, Any

from twisted.internet import task
from twisted.web.client import Agent, readBody

import txgreen

# Twisted's readBody warns that the Agent's proxy of the transport has no abortConnection; that
# only matters when cancelling readBody, which relay() does not.
warnings.filterwarnings("ignore", "Using readBody with a transport", DeprecationWarning)

STREAM_CHUNKS = 5
UPLOAD_BLOCK = 64 * 1024


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def wait_on_reactor(seconds: float, environ: dict[str, Any]) -> dict[str, Any]:
    """Wait ``seconds`` on a Twisted timer (``deferLater``) with ``block_on``.

    The answer also names the client's port (``REMOTE_PORT``): requests multiplexed on one
    HTTP/2 connection all have the same.
    """
    started = time.monotonic()
    value = txgreen.block_on(task.deferLater(_reactor(), seconds, lambda: "timer fired"))
    return {
        "waited": round(time.monotonic() - started, 3),
        "value": value,
        "remote_port": environ.get("REMOTE_PORT"),
        "protocol": environ.get("SERVER_PROTOCOL"),
    }


def relay(base_url: str, path: str) -> dict[str, Any]:
    """GET ``base_url + path`` with Twisted's ``Agent`` (from sync code, with ``block_on``)."""
    agent = Agent(_reactor())  # type: ignore[no-untyped-call]
    response = txgreen.block_on(agent.request(b"GET", (base_url + path).encode()), timeout=10)
    body: bytes = txgreen.block_on(readBody(response), timeout=10)
    return {"code": response.code, "body": body.decode("utf-8")}


def _blocking_work(data: bytes) -> dict[str, Any]:
    # Code that blocks its OS thread: a plain time.sleep and a CPU-bound key derivation.
    time.sleep(0.05)
    digest = hashlib.pbkdf2_hmac("sha256", data, b"salt", 1000).hex()
    return {"thread": threading.get_ident(), "digest": digest}


def in_thread(data: bytes) -> dict[str, Any]:
    """Run blocking code in the reactor's thread pool with ``call_in_thread``."""
    done = txgreen.call_in_thread(_blocking_work, data, timeout=30)
    return {
        "request_thread": threading.get_ident(),
        "worker_thread": done["thread"],
        "digest": done["digest"],
    }


class StreamFailed(Exception):
    """Raised on purpose by a streamed body after some chunks (``/stream?fail_after=K``)."""


def chunks(n: int, delay: float, fail_after: int | None = None) -> Iterator[bytes]:
    """A streamed body: ``n`` lines, the green thread sleeping ``delay`` s between them.

    With ``fail_after``, it raises :class:`StreamFailed` after that many lines: the headers
    have gone out, so the server can only cut the response short.
    """
    for i in range(n):
        if i:
            txgreen.sleep(delay)
        if i == fail_after:
            raise StreamFailed(f"the stream fails on purpose after {i} chunks")
        yield b"chunk %d of %d\n" % (i + 1, n)


class Progress:
    """How many bytes the last ``/download`` body has produced (read by in-process tests)."""

    produced = 0


def download(size: int) -> Iterator[bytes]:
    """A body of ``size`` bytes in 64 KiB blocks, counting in :class:`Progress` what it made."""
    Progress.produced = 0
    block = b"x" * UPLOAD_BLOCK
    while Progress.produced < size:
        piece = block[: size - Progress.produced]
        Progress.produced += len(piece)
        yield piece


def file_summary(name: str, blocks: Iterable[bytes]) -> dict[str, Any]:
    """The size and SHA-256 of an uploaded file read as ``blocks``."""
    digest = hashlib.sha256()
    size = 0
    for block in blocks:
        digest.update(block)
        size += len(block)
    return {"name": name, "size": size, "sha256": digest.hexdigest()}


def read_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The blocks of a file object, :data:`UPLOAD_BLOCK` bytes at a time."""
    while block := stream.read(UPLOAD_BLOCK):
        yield block


def total(document: Any) -> dict[str, Any]:
    """The answer to ``POST /json``: the document back, and the sum of its ``numbers``."""
    numbers = document.get("numbers", []) if isinstance(document, dict) else []
    return {"received": document, "sum": sum(n for n in numbers if isinstance(n, int | float))}
