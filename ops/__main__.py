"""`python -m ops ...`: the operations CLI's entry point."""

from ops.cli import main

main()
