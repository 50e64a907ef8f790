"""Pruning rounds: the controller (Algorithm 1), the `fit` callback, run directories and reports."""
