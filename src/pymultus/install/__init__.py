"""Putting pymultus on a node and taking it off: the installer's use case (``pymultus install``
and ``uninstall``; ``cli.installer`` parses their command lines), the self-contained bundle, the
``#!`` launchers of the CNI executables and the thin plugin's code archive."""
