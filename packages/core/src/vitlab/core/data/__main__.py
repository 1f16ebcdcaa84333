"""``python -m vitlab.core.data check <dataset> <root>``: the data check without the ``vitlab`` script."""

import sys

from vitlab.core.data.check import main

if __name__ == "__main__":
    sys.exit(main())
