"""The URLs of the Django test project."""

from __future__ import annotations

from django.urls import path

from django_app import views

urlpatterns = [
    path("", views.home),
    path("hello/<str:name>", views.hello),
    path("json", views.json_view),
    path("form", views.form),
    path("upload", views.upload),
    path("stream", views.stream),
    path("download", views.download),
    path("error", views.error),
    path("wait", views.wait),
    path("relay", views.relay),
    path("thread", views.thread),
    path("client", views.client),
]
