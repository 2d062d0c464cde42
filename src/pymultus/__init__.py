"""pymultus: a Multus-compatible meta CNI plugin. The reusable CNI library is ``pymultus.cni``."""

__version__ = "0.1.0"
