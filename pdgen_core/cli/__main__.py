"""``python -m pdgen_core.cli``: the ``pdgen`` command."""

from pdgen_core.cli import main

main()
