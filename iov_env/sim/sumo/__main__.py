"""``python -m iov_env.sim.sumo``: an alias of ``iov sumo`` (build SUMO traces and describe their traffic)."""

import sys

from iov_env.cli import main

if __name__ == "__main__":
    sys.exit(main(["sumo", *sys.argv[1:]]))
