"""The fault soak (issue 9): ADD/DEL cycles through the real executables with faults injected at
random and the leak invariants checked after every cycle. ``bash scripts/soak.sh``; CI runs a
short version (test_soak.py).
"""
