"""The edge agent: reads meters, signs each read as it is taken, buffers it, syncs it.

It runs unattended on gateways and in technicians' handhelds; see
:mod:`edge_agent.buffer` for the durable store and :mod:`edge_agent.cli` for
the ``edge-agent`` command.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("meterhub")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
