"""The one error type of the data layer."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset or input file is unusable: the message names the file, column and rows.

    Raised before any output is written, so a failed command leaves nothing behind.
    """
