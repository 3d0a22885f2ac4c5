"""The two ways a CLI command fails, shared by every command group (main maps them to exit codes)."""


class UsageError(Exception):
    """Bad input: exit code 2, message on stderr (it names the flag and the reason)."""


class CommandError(Exception):
    """A valid request that cannot be carried out (unknown key, store failure): exit code 1."""
