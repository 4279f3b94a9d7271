"""``python -m pybpf``: the command-line tool."""

import sys

from pybpf.cli import main

sys.exit(main())
