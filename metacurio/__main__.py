"""``python -m metacurio``: the command line."""

import sys

from metacurio.app.cli import main

sys.exit(main())
