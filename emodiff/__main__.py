"""``python -m emodiff`` runs the command line, like the ``emodiff`` script."""

from emodiff.cli import main

main()
