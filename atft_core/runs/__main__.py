"""`python -m atft_core.runs ...`: see `atft_core.runs.cli`."""

from atft_core.entry import run_cli
from atft_core.runs.cli import main

run_cli(main)
