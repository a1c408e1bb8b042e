"""The one exception type that fmkit raises for bad input.

The command line prints ``fmkit: error: <message>`` and exits with code 2 for it, so a
message must be one line that names the file, folder or value at fault and, where it
helps, what was expected.
"""


class FmkitError(Exception):
    """Bad input (wrong path, wrong layout, corrupt file): a one-line, user-facing reason."""
