"""Shared test support: network namespaces, plugin paths, process helpers."""
