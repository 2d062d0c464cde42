"""Configuration models: the Multus netconf and pymultus settings. Parsing has no side effects."""
