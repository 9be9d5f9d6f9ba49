"""storefront bandit: the pure library (policies, learners, evaluation).

Nothing here imports Flask or Redis: the service and the simulator both drive
the same objects, so what the simulator measures is what the service serves.
"""

from bandit.config import ConfigError, StoreConfig, load_config, parse_config
from bandit.decision import Decision
from bandit.page import PageFiller, PageResult
from bandit.policy import POLICIES, Policy, make_policy
from bandit.rules import RulesPolicy

__all__ = [
    "POLICIES",
    "ConfigError",
    "Decision",
    "PageFiller",
    "PageResult",
    "Policy",
    "RulesPolicy",
    "StoreConfig",
    "load_config",
    "make_policy",
    "parse_config",
]
