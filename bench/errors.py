"""The exceptions that mean "the user's input is wrong": the CLI prints them in one line."""
from __future__ import annotations

from bench.data.base import DataError
from bench.metrics import MetricsInputError
from bench.suites import SpecError
from methods.base import HparamError


class BenchError(Exception):
    """Any other user-facing error (missing results, stale report, ...)."""


USER_ERRORS: tuple[type[BaseException], ...] = (BenchError, DataError, SpecError, HparamError,
                                                MetricsInputError)
