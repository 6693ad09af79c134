"""`python -m skyeye.chat`: the terminal chat (see `skyeye.chat.terminal`)."""

import sys

from skyeye.chat.terminal import main

if __name__ == "__main__":
    sys.exit(main())
