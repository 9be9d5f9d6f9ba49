"""Policies: the contract every one fulfils (``base``), one module per rung of the ladder, and the rest.

``base``      ``Policy``, ``TierPolicy`` and the ``Decision`` they return
``sampling``  the per-event random number and the inverse-CDF draw
``rules``     rung 0: ordered YAML rules
``tree``      rung 1: a learned tree served as rules
``mixture``   the ladder's served mixture (incumbent, challenger or holdout, shadow)
``uniform``   every candidate equally likely (a baseline)

Which module serves which tier is in :mod:`bandit.tiers`.
"""
