"""Thick mode: the node daemon."""
