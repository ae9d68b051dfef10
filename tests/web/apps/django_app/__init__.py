"""A small Django project served by txgreen (the routes are listed in :mod:`app_logic`).

One module each for the settings (:mod:`.settings`), the URLs (:mod:`.urls`), the views
(:mod:`.views`) and the WSGI entry point (:mod:`.wsgi`, ``application``). No database, no
installed apps: what a WSGI server sees of Django is the request cycle.

Serve it with ``python -m txgreen serve --chdir tests/web/apps django_app.wsgi:application``
or with ``gunicorn -k txgreen.web.gunicorn.GreenWorker --chdir tests/web/apps
django_app.wsgi:application``.
"""
