"""`python -m skyeye.hub card|push` (see `skyeye.hub.card`)."""

import sys

from skyeye.hub.card import main

if __name__ == "__main__":
    sys.exit(main())
