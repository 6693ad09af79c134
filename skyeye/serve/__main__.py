"""`python -m skyeye.serve` (console script `skyeye-serve`): the OpenAI-compatible API server (see `skyeye.serve.cli`)."""

import sys

from skyeye.serve.cli import main

if __name__ == "__main__":
    sys.exit(main())
