"""A small Flask app served by capataz in tests/test_apps.py.

Served as `--wsgi-file tests/apps/flask_app.py --callable app` (or the
module `flask_app:app`), with Flask coming from --virtualenv .venv-test.
"""

import hashlib
import os
import time

from flask import Flask, Response, jsonify, redirect, request, send_file, url_for

app = Flask(__name__)

FORM = """<!doctype html>
<form method="post" action="/form">
  <input name="name"><input name="color"><button>send</button>
</form>
"""


@app.get("/")
def index():
    return "flask ok"


@app.get("/pid")
def pid():
    return str(os.getpid())


@app.route("/form", methods=["GET", "POST"])
def form():
    if request.method == "GET":
        return FORM
    return f"hello {request.form['name']}, you like {request.form.get('color', '?')}"


@app.post("/upload")
def upload():
    f = request.files["file"]
    data = f.read()
    return jsonify(
        filename=f.filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        note=request.form.get("note"),
    )


@app.get("/redirect")
def go_elsewhere():
    return redirect(url_for("target"))


@app.get("/target")
def target():
    return "flask target reached"


@app.get("/stream")
def stream():
    n = int(request.args.get("n", "5"))
    delay = float(request.args.get("delay", "0.3"))

    def generate():
        for i in range(n):
            yield f"chunk {i} {time.time():.6f}\n"
            time.sleep(delay)

    return Response(generate(), mimetype="text/plain")


@app.get("/blob")
def blob():
    return b"x" * int(request.args.get("n", "1048576"))


@app.get("/send-file")
def send_a_file():
    """send_file of plain_app's /file?size=N file (wsgi.file_wrapper underneath)."""
    import plain_app

    return send_file(plain_app.file_path(int(request.args.get("size", plain_app.FILE_SIZE))))


@app.get("/json")
def as_json():
    return jsonify(framework="flask", items=[1, 2, 3], nested={"ok": True})
