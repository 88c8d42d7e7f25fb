"""Reconcile CxEngage nodes with the platform state kept as YAML files."""

__version__ = "0.1.0"
