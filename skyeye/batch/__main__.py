"""`python -m skyeye.batch` (console script `skyeye-batch`): many scenes on Ray workers (see `skyeye.batch.cli`)."""

import sys

from skyeye.batch.cli import main

if __name__ == "__main__":
    sys.exit(main())
