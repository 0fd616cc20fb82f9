"""``python -m imgsearchd.cli``: the console script without its installed wrapper."""

import sys

from .main import main

sys.exit(main())
