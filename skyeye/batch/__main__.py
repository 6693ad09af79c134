import sys

from skyeye.batch.cli import main

sys.exit(main())
