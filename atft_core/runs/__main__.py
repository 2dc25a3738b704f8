"""`python -m atft_core.runs ...`: see `atft_core.runs.cli`."""

import sys

from atft_core.runs.cli import main

sys.exit(main())
