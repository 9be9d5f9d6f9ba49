"""Off-policy evaluation: what a policy would have earned on logged traffic.

``estimators``  IPS, SNIPS, DM, DR with intervals, ESS, max weight, lift (formulas and references inside)
``evaluation``  from joined records and a target policy to the estimators' per-round arrays, per slot
"""

from bandit.ope.estimators import DM, DR, ESTIMATORS, IPS, SNIPS, Estimate, Estimator, Lift, OffPolicyData, lift

__all__ = ["DM", "DR", "ESTIMATORS", "IPS", "SNIPS", "Estimate", "Estimator", "Lift", "OffPolicyData", "lift"]
