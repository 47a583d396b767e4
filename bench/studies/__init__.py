"""Studies: one-off experiments built on the library's own run code, each a `python -m zpeft.studies.NAME` script."""
