"""capataz's Python-side helpers, loaded once per worker before the app.

Kept deliberately small: loading the app and the wsgi.file_wrapper class.
Everything on the request path is done in Rust (src/wsgi/).

It imports only what the interpreter has already loaded at start-up, so an
idle worker holds no module its app did not ask for: `importlib.util` would
pull in contextlib, collections and functools, and `signal` pulls in enum
(about 1 MiB of a worker's memory between them). The import machinery's own
frozen modules (`_frozen_importlib*`, what `importlib` re-exports) and the
C-level `_signal` do the same work.
"""
import _frozen_importlib as _bootstrap
import _frozen_importlib_external as _bootstrap_external
import io
import os
import sys


class FileWrapper:
    """PEP 3333 wsgi.file_wrapper.

    capataz serves a FileWrapper whose file has a real fileno() with sendfile,
    from the file's current offset. Iteration is the fallback for file-likes
    without a descriptor.
    """

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


def load_app(module, wsgi_file, callable_name):
    """Import the WSGI callable from `pkg.mod[:callable]` or a file path."""
    if wsgi_file:
        path = os.path.abspath(wsgi_file)
        if not os.path.isfile(path):
            raise FileNotFoundError("wsgi-file %r does not exist" % path)
        directory = os.path.dirname(path)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        name = "capataz_wsgi_file"
        loader = _bootstrap_external.SourceFileLoader(name, path)
        spec = _bootstrap_external.spec_from_file_location(name, path, loader=loader)
        mod = _bootstrap.module_from_spec(spec)
        sys.modules[name] = mod
        loader.exec_module(mod)
        attr = callable_name
        where = path
    else:
        modname, _, attr = module.partition(":")
        attr = attr or callable_name
        # What importlib.import_module does for an absolute name.
        __import__(modname)
        mod = sys.modules[modname]
        where = modname
    try:
        app = getattr(mod, attr)
    except AttributeError:
        raise AttributeError("%s has no callable %r" % (where, attr)) from None
    if not callable(app):
        raise TypeError("%s:%s is not callable" % (where, attr))
    return app


def enable_tracebacks_on_harakiri():
    """SIGUSR2 dumps every thread's Python traceback to stderr (the log).

    The master sends it when a request passes its harakiri deadline, just
    before the SIGKILL. faulthandler writes without the GIL, so it works
    even when the stuck thread holds it.
    """
    import _signal
    import faulthandler

    faulthandler.register(_signal.SIGUSR2, all_threads=True)
    # Importing `_signal` (or `signal`) installs Python's KeyboardInterrupt
    # handler for SIGINT, which only ever runs on the main thread, and ours
    # never runs Python: SIGINT (fast shutdown) must kill the worker at once.
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)


def spooled_input(fd):
    """wsgi.input for a body spooled to a temp file (owns and closes fd)."""
    return io.open(fd, "rb", closefd=True)
