"""The exceptions that mean "the user's input is wrong": the CLI prints them in one line, exit 2.

The bottom of the import graph: every package imports this module and it imports nothing of the
project. The other user-error classes live beside the code that raises them (``DataError`` in
``bench.data.base``, ``MetricsInputError`` in ``bench.evaluate.metrics``, ``HparamError`` in
``methods.base``); ``bench.cli.user_errors`` collects them.
"""
from __future__ import annotations


class BenchError(Exception):
    """Any other user-facing error (missing results, stale report, ...)."""


class SpecError(ValueError):
    """A suite or sweep file (or a ``--set``) is malformed; the message names file and key."""

