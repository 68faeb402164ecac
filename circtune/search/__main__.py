"""Entry point of ``python -m circtune.search``."""

from circtune._cli import run_main
from circtune.search.cli import main

raise SystemExit(run_main(main))
