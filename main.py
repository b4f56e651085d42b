"""Start BPR Studio: ``python main.py`` opens the demo dataset; ``python main.py PATH [options]`` as ``bpr-studio gui``."""

import sys

from bpr_studio.cli import main

if __name__ == "__main__":
    sys.exit(main(["gui"] + sys.argv[1:]))
