"""A Flask application served by txgreen (the routes are listed in :mod:`app_logic`).

Serve it with ``python -m txgreen serve --chdir tests/web/apps flask_app:app`` or with
``gunicorn -k txgreen.web.gunicorn.GreenWorker --chdir tests/web/apps flask_app:app``.
"""

from __future__ import annotations

from typing import Any

import app_logic as work
from flask import Flask, Response, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix

app = Flask(__name__)


@app.get("/")
def home() -> Response:
    return Response("flask home\n", mimetype="text/plain")


@app.get("/hello/<name>")
def hello(name: str) -> Response:
    return Response(f"hello, {name}\n", mimetype="text/plain")


@app.route("/json", methods=["GET", "POST"])
def json_view() -> Any:
    if request.method == "POST":
        return jsonify(work.total(request.get_json()))
    return jsonify({"framework": "flask", "items": [1, 2, 3]})


@app.post("/form")
def form() -> Any:
    return jsonify({"fields": request.form.to_dict(flat=False)})


@app.post("/upload")
def upload() -> Any:
    uploaded = request.files["file"]
    summary = work.file_summary(uploaded.filename or "", work.read_blocks(uploaded.stream))
    return jsonify({**summary, "note": request.form.get("note", "")})


@app.get("/stream")
def stream() -> Response:
    n = int(request.args.get("n", work.STREAM_CHUNKS))
    delay = float(request.args.get("delay", "0.05"))
    fail_after = request.args.get("fail_after")
    body = work.chunks(n, delay, None if fail_after is None else int(fail_after))
    return Response(body, mimetype="text/plain")


@app.get("/download")
def download() -> Response:
    return Response(work.download(int(request.args["size"])), mimetype="application/octet-stream")


@app.get("/error")
def error() -> Response:
    raise RuntimeError("this view fails on purpose")


@app.get("/wait")
def wait() -> Any:
    seconds = float(request.args.get("seconds", "0.05"))
    return jsonify(work.wait_on_reactor(seconds, request.environ))


@app.get("/relay")
def relay() -> Any:
    base = f"{request.scheme}://{request.environ['SERVER_NAME']}:{request.environ['SERVER_PORT']}"
    return jsonify(work.relay(base, request.args["path"]))


@app.get("/thread")
def thread() -> Any:
    return jsonify(work.in_thread(request.args.get("data", "").encode()))


@app.get("/client")
def client() -> Any:
    return jsonify({"remote_addr": request.remote_addr, "scheme": request.scheme})


# The same app for a server behind one reverse proxy that sets X-Forwarded-For, -Proto and -Host:
# werkzeug's ProxyFix trusts those headers (only the last hop's: x_for=1...). Without it, the app
# sees the proxy's address, which is right when no proxy is there (the headers could be forged).
behind_proxy = ProxyFix(app, x_for=1, x_proto=1, x_host=1)
