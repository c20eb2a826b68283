"""`python -m specpair.cli`: the same as the `specpair` command."""

import sys

from . import main

sys.exit(main())
