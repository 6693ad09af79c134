import sys

from skyeye.mcp.server import main

sys.exit(main())
