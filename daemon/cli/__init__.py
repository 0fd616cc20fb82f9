"""The command line: one module per command group, output for people and for programs, and the client
of a running daemon. ``imgsearchd.cli.main:main`` is the console script."""
