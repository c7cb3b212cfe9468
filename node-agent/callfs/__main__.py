"""``python -m callfs`` is the ``callfs`` command."""

from callfs.cli.main import main

main()
