"""``python -m plugin.cli``: the ``customlabels`` command (the local stack runs it this way)."""

import sys

from plugin.cli import main

sys.exit(main())
