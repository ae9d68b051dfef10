"""``python -m txgreen``: the command line (see :mod:`txgreen._cli`)."""

import sys

from txgreen._cli import main

if __name__ == "__main__":
    sys.exit(main())
