"""storefront bandit: the pure library (config, policies per rung, learners, escalation, off-policy evaluation).

Nothing here imports Flask or Redis: the service and the simulator both drive
the same objects, so what the simulator measures is what the service serves.

``config``      the store YAML, parsed into frozen objects
``tiers``       the tier registry: the ladder's rungs by name
``policies``    the ``Policy`` contract and one module per rung (``rules``, ``tree``), the served mixture, baselines
``page``        filling a page's slots in order (exclusions, pins, publisher caps)
``eventlog``    logged events, rewards and the joined records learners read (one definition of the format)
``learners``    what fits models from the log: the tree, the reward model, the Vowpal Wabbit adapter
``escalation``  a slot's way up and down the ladder: state, gate, guardrail, the state machine, the learner
``ope``         off-policy estimators and evaluating a policy on a joined log
"""

from bandit.config import ConfigError, StoreConfig, load_config, parse_config
from bandit.page import PageFiller, PageResult
from bandit.policies.base import Decision, Policy, TierPolicy
from bandit.policies.rules import RulesPolicy

__all__ = [
    "ConfigError",
    "Decision",
    "PageFiller",
    "PageResult",
    "Policy",
    "RulesPolicy",
    "StoreConfig",
    "TierPolicy",
    "load_config",
    "parse_config",
]
