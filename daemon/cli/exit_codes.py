"""The command line's exit statuses, one home for every ``cli*`` module (and scripts that read them).

docs/cli.md lists them for people. A usage error is argparse's own 2 wherever it is found: by
argparse (an unknown option, a value out of range), by a command's own checks, in the settings
file (``config check``, a start), or by the daemon (a 400 answer: a value it refused).
"""

EXIT_OK = 0
EXIT_ERROR = 1  # the daemon or the file refused (the message says why)
EXIT_USAGE = 2  # a bad option, argument, value (a 400 from the daemon too) or configuration
EXIT_MODEL = 3  # a model could not be loaded
EXIT_NOT_RUNNING = 4  # no daemon answers at the configured address
EXIT_BUSY = 5  # a daemon already serves the data folder (a second serve, search --local)
