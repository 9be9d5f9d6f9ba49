"""What fits models from the joined log.

``tree``          grows the tree rung's snapshot (the rules plus exceptions)
``reward_model``  the cross-fitted reward model ``q̂(x, a)`` (critic, and DM/DR in off-policy evaluation)
``vw``            Vowpal Wabbit behind one adapter: the only module that imports ``vowpalwabbit``
"""
