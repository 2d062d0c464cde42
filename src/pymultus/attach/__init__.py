"""The use cases: ADD / DEL / CHECK / STATUS / GC of a pod's network attachments."""
