"""``python -m keel.cli``: the ``keel`` command."""

from . import main

main()
