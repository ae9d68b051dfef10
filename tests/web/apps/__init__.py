"""Real applications, from PyPI frameworks, that the serving tests run under txgreen.

- :mod:`apps.flask_app` (``apps.flask_app:app``): a Flask application.
- :mod:`apps.django_app` (``apps.django_app.wsgi:application``): a small Django project, its
  settings, URLs and views each in one module.

Both answer the same routes the same way (tests/web/test_real_apps.py checks each through
every kind of server), their views built on :mod:`apps.work`:

===================  ========================================================================
``GET /``            a plain-text home page
``GET /hello/NAME``  routing with a path parameter: ``hello, NAME``
``GET /json``        a JSON document; ``POST /json`` echoes the JSON it gets, with a sum
``POST /form``       a URL-encoded form: its fields as JSON
``POST /upload``     a multipart upload (field ``file``): its name, size and SHA-256 as JSON
``GET /stream``      a streamed body: ``n`` chunks from a generator, ``delay`` s apart (with
                     ``fail_after=K`` the generator raises after K chunks)
``GET /download``    ``size`` bytes, streamed in 64 KiB blocks (``work.Progress`` counts them)
``GET /error``       the view raises: the framework's own 500 page
``GET /wait``        waits ``seconds`` on a Twisted timer with ``txgreen.block_on``
``GET /relay``       fetches ``path`` from this same server with Twisted's ``Agent``
``GET /thread``      runs blocking code in a thread pool with ``txgreen.call_in_thread``
``GET /client``      the client address and URL scheme the framework sees (proxy headers)
===================  ========================================================================

Tests import them as ``apps.*`` (pytest puts tests/web on ``sys.path``); a server started in
a subprocess gets ``--chdir tests/web``.
"""
