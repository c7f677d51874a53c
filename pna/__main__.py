"""``python -m pna <command>``: the same command line as the ``pna`` console script."""
import sys

from pna.cli import main

if __name__ == "__main__":
    sys.exit(main())
