"""The store config: parsed once from YAML into frozen, typed objects.

``model``     the objects (catalog, context schema, rules, slots, reward, constraints)
``settings``  per-slot settings (tree, escalation, gradient, the exposure cap, the cold-start budget)
``parse``     YAML → :class:`StoreConfig`, every problem named by file, line and field
``checker``   the field checks the parser is built from (the simulator's scenarios reuse them)
``yamlpos``   YAML loading that keeps line numbers
"""

from bandit.config.model import (
    CONTEXT_KINDS,
    DAYS,
    FEATURE_KINDS,
    Catalog,
    Condition,
    Constraints,
    ContextField,
    ContextSchema,
    FeatureSpec,
    Item,
    Pin,
    RewardConfig,
    Rule,
    ServiceSettings,
    SlotConfig,
    StoreConfig,
    format_number,
    is_finite_number,
    parse_duration,
)
from bandit.config.parse import ConfigChecker, coerce_feature, load_config, parse_config
from bandit.config.settings import (
    ESCALATION_MODES,
    LEARNED_TIERS,
    ColdStartSettings,
    EscalationSettings,
    ExposureSettings,
    GradientSettings,
    TreeSettings,
)
from bandit.config.yamlpos import ConfigError, Problem

__all__ = [
    "CONTEXT_KINDS",
    "DAYS",
    "ESCALATION_MODES",
    "FEATURE_KINDS",
    "LEARNED_TIERS",
    "Catalog",
    "ColdStartSettings",
    "Condition",
    "ConfigChecker",
    "ConfigError",
    "Constraints",
    "ContextField",
    "ContextSchema",
    "EscalationSettings",
    "ExposureSettings",
    "FeatureSpec",
    "GradientSettings",
    "Item",
    "Pin",
    "Problem",
    "RewardConfig",
    "Rule",
    "ServiceSettings",
    "SlotConfig",
    "StoreConfig",
    "TreeSettings",
    "coerce_feature",
    "format_number",
    "is_finite_number",
    "load_config",
    "parse_config",
    "parse_duration",
]
