"""The hub's HTTP side: the REST API under ``/api/v1``, the operator pages, ``/metrics``.

Served by ``meterhub serve --http-port`` beside ingest (see :mod:`hub.api.app`).
"""
