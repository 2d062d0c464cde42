"""Operator tools: ``pymultus status``, ``doctor`` and ``validate`` (the logic; cli/ prints)."""
