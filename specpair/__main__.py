"""`python -m specpair`: the same as the `specpair` command."""

import sys

from .cli import main

sys.exit(main())
