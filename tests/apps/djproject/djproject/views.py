"""Views covering what a real Django site needs from its server."""
import hashlib
import os
import time
from html import escape

from django.http import HttpResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.views.decorators.http import require_http_methods


def index(request):
    return HttpResponse("django ok")


def pid(request):
    return HttpResponse(str(os.getpid()))


@require_http_methods(["GET", "POST"])
def form(request):
    if request.method == "POST":
        return HttpResponse(f"hello {escape(request.POST['name'])} from django")
    token = get_token(request)
    return HttpResponse(
        "<!doctype html><form method='post' action='/form/'>"
        f"<input type='hidden' name='csrfmiddlewaretoken' value='{token}'>"
        "<input name='name'><button>send</button></form>"
    )


@require_http_methods(["GET", "POST"])
def upload(request):
    if request.method == "GET":
        token = get_token(request)
        return HttpResponse(
            "<!doctype html><form method='post' enctype='multipart/form-data'>"
            f"<input type='hidden' name='csrfmiddlewaretoken' value='{token}'>"
            "<input type='file' name='file'><button>send</button></form>"
        )
    f = request.FILES["file"]
    digest = hashlib.sha256()
    size = 0
    for chunk in f.chunks():
        digest.update(chunk)
        size += len(chunk)
    return JsonResponse(
        {
            "filename": f.name,
            "size": size,
            "sha256": digest.hexdigest(),
            # InMemoryUploadedFile or TemporaryUploadedFile (spooled to disk)
            "storage": type(f).__name__,
        }
    )


def go_elsewhere(request):
    return HttpResponseRedirect("/target/")


def target(request):
    return HttpResponse("django target reached")


def stream(request):
    n = int(request.GET.get("n", "5"))
    delay = float(request.GET.get("delay", "0.3"))

    def generate():
        for i in range(n):
            yield f"chunk {i} {time.time():.6f}\n"
            time.sleep(delay)

    return StreamingHttpResponse(generate(), content_type="text/plain")
