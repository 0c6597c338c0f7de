"""``python -m fastbgp``: the same entry point as the ``fastbgp`` command."""

import sys

from fastbgp.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
