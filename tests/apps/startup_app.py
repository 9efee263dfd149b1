"""Records, at import time, what --chdir, --pythonpath and --env must have
set up before the app was imported."""

import json
import os
import sys

IMPORT_STATE = {
    "cwd": os.getcwd(),
    "path": list(sys.path),
    "foo": os.environ.get("STARTUP_FOO"),
    "bar": os.environ.get("STARTUP_BAR"),
    "prefix": sys.prefix,
}
try:
    import startup_helper  # lives in a second --pythonpath directory

    IMPORT_STATE["helper"] = startup_helper.__file__
except ImportError as e:
    IMPORT_STATE["helper"] = None
    IMPORT_STATE["helper_error"] = repr(e)


def application(environ, start_response):
    body = json.dumps(IMPORT_STATE).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
