"""`python -m skyeye.chat`: the terminal chat, scene-aware (see `skyeye.scenechat.terminal`).

A `python -m` entry module: nothing imports it, so it may run a part above `chat`
(tests/layout/test_import_graph.py ranks every `__main__` as an entry point).
"""

import sys

from skyeye.scenechat.terminal import main

if __name__ == "__main__":
    sys.exit(main())
