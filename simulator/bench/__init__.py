"""Benchmarks on simulated shoppers.

``simulate``  decisions per second
``ladder``    escalation, each gate estimate beside the truth
``ope``       off-policy estimators against the truth, over many seeds
``evaluate``  ``storefront evaluate`` on a month of a hero's log: seconds and peak memory
"""
