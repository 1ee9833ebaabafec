"""The error a benchmark or study raises for bad input (an unknown scenario, too few seeds, a missing folder).

``iov`` prints its message on one line and exits with status 1; a library caller catches it as a ``ValueError``.
"""


class BenchmarkError(ValueError):
    """Bad input to a benchmark command; the message names the option, the value and what is allowed."""
