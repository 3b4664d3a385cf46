"""gunicorn settings for examples/gunicorn_app.py.

    LOGHANDLERS_JSON_URL=http://127.0.0.1:8787/json \
        gunicorn -c examples/gunicorn.conf.py --chdir examples gunicorn_app:app

(``python examples/gunicorn_app.py`` does all of it for you, against a local collector.)

Nothing here is about logging: the app configures its handler when it is imported, and no
``post_fork`` or ``worker_exit`` hook is needed. Each worker ships its own records under its
own source id ``"<hostname>:<pid>"``, and drains its handler when it exits (gunicorn workers
leave through ``sys.exit``, which runs ``atexit``; loghandlers' own hook does the rest).
"""

bind = "127.0.0.1:8000"
workers = 3  # pre-forked worker processes
worker_class = "sync"
graceful_timeout = 10  # on SIGTERM, how long workers may finish requests (and drain logs)
# gunicorn 25.1+ opens a control socket, by default one path per user; the demo needs none
# (older versions ignore this unknown name in a config file).
control_socket_disable = True

# preload_app = True imports the app, and so builds its handler, once in the master before
# the workers are forked (less memory, faster worker boots). That is fine with loghandlers:
# a handler re-initialises itself in every forked child (os.register_at_fork) with a fresh
# buffer, connection pool, worker thread and source id, so each worker still ships under its
# own pid, never the master's. Without preload_app (the default, as here) each worker
# imports the app, and builds its handler, after the fork: same result.
preload_app = False
