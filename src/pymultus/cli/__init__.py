"""Entry points: the pymultus command and the multus / multus-shim executables."""
