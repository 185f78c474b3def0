"""The one exception type that the command line turns into a one-line message and exit code 2."""


class BgadError(Exception):
    """A problem with the user's input or environment, with a message that names the fix."""
