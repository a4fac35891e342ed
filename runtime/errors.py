"""The one exception type that every user-facing failure raises.

The CLI prints its message as a single line and exits non-zero; the Python API lets it
propagate. Messages name the problem and the fix.
"""


class DeepSMOTEError(Exception):
    """A problem with the user's input, bundle or environment, with a one-line message."""
