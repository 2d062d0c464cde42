"""On-disk caches owned by pymultus (the per-container delegate list)."""
