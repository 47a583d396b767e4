"""`python -m zpeft`: the same entry point as the `zpeft` command."""

import sys

from zpeft.cli import main

sys.exit(main())
