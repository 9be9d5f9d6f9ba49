"""``python -m service.cli``: the ``storefront`` command (how ``serve`` starts its learner)."""

import sys

from service.cli import main

sys.exit(main())
