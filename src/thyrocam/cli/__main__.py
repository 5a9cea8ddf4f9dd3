"""``python -m thyrocam.cli``: the same as the ``thyrocam`` command."""

import sys

from thyrocam.cli import main

sys.exit(main())
