"""`python -m intentlab` runs the command-line interface."""

import sys

from intentlab.cli import main

sys.exit(main())
