"""`python -m skyeye.scene`: see `skyeye.scene.cli`."""

import sys

from skyeye.scene.cli import main

sys.exit(main())
