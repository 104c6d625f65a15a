"""``python -m cfactor.testing.sim --help``."""

import sys

from cfactor.testing.sim.cli import main

sys.exit(main())
