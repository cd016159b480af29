"""The launch entry point of ``timegrpo train``: ``accelerate launch -m timegrpo.train --config recipes/X.yaml``
(also ``torchrun -m timegrpo.train``). The command itself is :mod:`timegrpo.cli.train`."""

import sys

from timegrpo.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
