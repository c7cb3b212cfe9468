"""The ``callfs`` command line."""
