import sys

from skyeye.serve.cli import main

sys.exit(main())
