"""Adapters: the user's code and arrays on one side, canonical float64 numpy on the other.

Private modules, one job each; the public names are re-exported from :mod:`harness`.
"""
