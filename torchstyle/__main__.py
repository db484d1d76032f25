"""``python -m torchstyle`` entry point."""

import sys

from torchstyle.cli import main

if __name__ == "__main__":
    sys.exit(main())
