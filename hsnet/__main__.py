"""``python -m hsnet`` is the ``hsnet`` command."""

from hsnet.cli import main

main()
