"""The WSGI app tests/test_uwsgi.py runs under uWSGI: it logs once when loaded (in the
master, or with ``--lazy-apps`` in each worker) and once per request, each record with the
pid that logged it; the reply body is that pid."""

import logging
import os
import time

from loghandlers import JSONHandler

log = logging.getLogger("uwsgi_app")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(JSONHandler())  # url and spool_dir from LOGHANDLERS_* variables
log.info("app loaded", extra={"pid": os.getpid(), "path": ""})


def application(environ, start_response):
    path = environ.get("PATH_INFO") or "/"
    log.info("request %s", path, extra={"pid": os.getpid(), "path": path})
    time.sleep(0.01)  # a little work, so concurrent requests spread over the workers
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
