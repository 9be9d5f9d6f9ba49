"""Benchmarks of the service that print numbers: ``rank`` (``/v1/rank`` against a do-nothing twin, ``twin``)."""
