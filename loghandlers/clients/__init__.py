"""The official SDKs' own APIs, on the loghandlers pipeline.

One module per SDK; migrating is one changed import::

    from loghandlers.clients.samsara import SamsaraClient       # samsara_sdk
    from loghandlers.clients.initialstate import Streamer       # ISStreamer.Streamer
    import loghandlers.clients.panoply as panoply               # panoply
    from loghandlers.clients.kronos import KronosClient         # pykronos.client

Each client owns a service handler (the same class the logging path uses, attached to no
logger) and hands it ready-made events: ``handler.submit(event)`` for what the SDK buffers,
``handler.export_now(events)`` for what it sends at once. So the buffer, batching, retries
(``Retry-After`` included), spool and replay, fork handling, secret scrubbing and the
drain at interpreter exit are the handlers' own. Every client also takes the handlers'
common options as keyword arguments (``url``, ``spool_dir``, ``close_timeout``, ...) and
reads the same ``LOGHANDLERS_<SERVICE>_*`` environment variables.

The modules are imported on demand, so ``import loghandlers`` costs nothing for them.
"""
