"""`python -m skyeye.evaluate` (console script `skyeye-evaluate`): evaluate a model on instruction
data (see `skyeye.evaluation.cli`).

An entry module like the `skyeye.*.__main__`s (the name the README and the docs use): nothing
imports it, so it has no layer of its own (tests/layout/test_import_graph.py, ENTRY_ALIASES).
"""

import sys

from skyeye.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
