"""`python -m skyeye.scene` (console script `skyeye-scene`): one whole scene window by window (see `skyeye.scene.cli`)."""

import sys

from skyeye.scene.cli import main

if __name__ == "__main__":
    sys.exit(main())
