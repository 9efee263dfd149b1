"""One callable per configuration source, to prove the precedence
defaults < ini < env < CLI by which body comes back."""


def _app(body):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app


application = _app(b"default")
app_ini = _app(b"ini")
app_env = _app(b"env")
app_cli = _app(b"cli")
app_section = _app(b"section")
