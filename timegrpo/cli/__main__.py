"""``python -m timegrpo.cli``: the ``timegrpo`` command."""

import sys

from timegrpo.cli import main

sys.exit(main())
