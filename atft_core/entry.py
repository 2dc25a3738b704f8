"""How every `python -m atft_core.*` command line ends: `run_cli(main)`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn


def run_cli(main: Callable[[], int]) -> NoReturn:
    """Exit with `main()`'s status; quietly (status 0) when the reader of stdout has gone, as
    `python -m atft_core.runs list | head -3` does, instead of a BrokenPipeError traceback."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout once more at exit, which would fail again: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
