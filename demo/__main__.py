"""`python -m demo`: start the SkyEye Gradio app (see `demo.app`)."""

import sys

from demo.app import main

if __name__ == "__main__":
    sys.exit(main())
