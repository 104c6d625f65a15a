"""``python -m cfactor``: the ``cfactor`` command, where no script is on ``PATH``."""

import sys

from cfactor.cli import main

sys.exit(main())
