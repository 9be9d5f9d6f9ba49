"""``python -m simulator``: the simulator's commands without the service (``simulate``, ``bench ...``)."""

import sys

from simulator.cli import main

sys.exit(main())
