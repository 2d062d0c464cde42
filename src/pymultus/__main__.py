"""``python -m pymultus``: the ``pymultus`` command."""

import sys

from pymultus.cli.main import main

sys.exit(main())
