from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("pid/", views.pid),
    path("form/", views.form),
    path("upload/", views.upload),
    path("redirect/", views.go_elsewhere),
    path("target/", views.target),
    path("stream/", views.stream),
]
