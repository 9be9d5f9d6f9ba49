"""The HTTP service: parse, call the bandit library, store, serialise."""
