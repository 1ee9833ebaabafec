"""``python -m iov_env.cli``: the same as ``iov``."""

from iov_env.cli import run

run()
