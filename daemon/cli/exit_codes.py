"""The command line's exit statuses, one home for every ``cli*`` module (and scripts that read them)."""

EXIT_OK = 0
EXIT_ERROR = 1  # the daemon or the file refused (the message says why)
EXIT_USAGE = 2  # a bad option, argument or configuration
EXIT_MODEL = 3  # a model could not be loaded
EXIT_NOT_RUNNING = 4  # no daemon answers at the configured address
