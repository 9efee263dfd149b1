"""Imports a module that exists only in the test virtualenv's site-packages
(tests/test_virtualenv.py drops venvmarker.py there) and reports where it
came from and what sys looks like."""

import json
import sys

import venvmarker


def application(environ, start_response):
    body = json.dumps(
        {
            "prefix": sys.prefix,
            "base_prefix": sys.base_prefix,
            "executable": sys.executable,
            "marker": venvmarker.__file__,
            "mark": venvmarker.MARK,
            "path": sys.path,
            "version": list(sys.version_info[:3]),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
