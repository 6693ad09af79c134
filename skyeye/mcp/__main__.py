"""`python -m skyeye.mcp` (console script `skyeye-mcp`): the MCP stdio server (see `skyeye.mcp.server`)."""

import sys

from skyeye.mcp.server import main

if __name__ == "__main__":
    sys.exit(main())
