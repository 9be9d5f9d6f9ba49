"""A slot's way up and down the ladder.

``state``      what survives a restart (``SlotState``, JSON), and how arms are named
``gate``       shadow → ramp: the lower confidence bound of the off-policy lift
``guardrail``  ramp or promoted → back: live reward against the previous tier
``records``    what a ladder keeps of each joined record
``ladder``     ``SlotLadder``: one slot's state machine
``learner``    ``Learner``: one ladder per escalating slot of a store
"""
