"""`python -m atft_core.sweep ...`: see `atft_core.sweep.cli`."""

from atft_core.entry import run_cli
from atft_core.sweep.cli import main

run_cli(main)
