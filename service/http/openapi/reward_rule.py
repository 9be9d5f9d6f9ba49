"""The reward rule of the config, in words.

The rule that turns the events posted for one slot decision into its reward,
with the configured event weights, revenue weight, reward window and default
reward.  It is said three times in the document: in the ``info`` description,
in the ``RewardRequest`` schema and in the ``reward`` operation.
"""

from __future__ import annotations

from bandit.config import StoreConfig
from service.http.openapi.blocks import num


def reward_rule(config: StoreConfig) -> str:
    """How a slot decision's reward is computed from what was posted for it, with the configured numbers."""
    reward = config.reward
    weights = ", ".join(f"`{name}` {num(w)}" for name, w in reward.events.items())
    return (
        "The reward of one slot decision is the sum of the weights of the distinct event types posted for it "
        f"({weights}), plus `revenue_weight` ({num(reward.revenue_weight)}) × the revenue of the first `purchase`, "
        "plus the last explicit `reward` posted, if any. The first post of each event type counts; repeats are "
        "answered `duplicate` and ignored, so retrying a post is safe. An explicit `reward` may be posted again: the "
        f"last one counts. A decision with nothing posted inside the reward window ({num(reward.window_seconds)} s) "
        f"gets the default reward ({num(reward.default)}). Revenue only counts on a `purchase`."
    )
