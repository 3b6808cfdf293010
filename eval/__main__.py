"""``python -m eval --gold FILE [--docs PATH ...] [--check] ...``: see ``eval.runner``."""

import sys

from eval.runner import main

sys.exit(main())
