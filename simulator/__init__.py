"""Offline dry runs of a store config against simulated shoppers with a known truth.

See ``docs/simulator.md``.  The simulator drives the same ``bandit`` library
the service runs: in process on a simulated clock (:mod:`simulator.runner`),
or over HTTP against a live service (:mod:`simulator.http_driver`).
"""
