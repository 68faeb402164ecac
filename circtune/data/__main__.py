"""Entry point of ``python -m circtune.data``."""

from circtune._cli import run_main
from circtune.data.cli import main

raise SystemExit(run_main(main))
