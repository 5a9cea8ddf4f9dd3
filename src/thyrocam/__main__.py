"""``python -m thyrocam``: the ``thyrocam`` command (``torchrun ... -m thyrocam train ...``)."""

import sys

from thyrocam.cli import main

if __name__ == "__main__":
    sys.exit(main())
