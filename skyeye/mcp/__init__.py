"""`python -m skyeye.mcp`: SkyEye's tools for agent frameworks over the Model Context Protocol."""
