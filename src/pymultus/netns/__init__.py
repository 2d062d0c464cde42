"""Network-namespace operations (interface checks, default-route edits)."""
