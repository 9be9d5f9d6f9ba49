"""Benchmarks on simulated shoppers.

``simulate``  decisions per second
``ladder``    escalation, each gate estimate beside the truth
``ope``       off-policy estimators against the truth, over many seeds
"""
