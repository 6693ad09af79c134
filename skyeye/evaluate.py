"""`python -m skyeye.evaluate`: evaluate a model on instruction data (see `skyeye.evaluation.cli`)."""

import sys

from skyeye.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
