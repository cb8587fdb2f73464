"""``python -m rssnn_deploy.training [options]`` (also what ``torchrun`` launches)."""
import sys

from rssnn_deploy.cli.train_args import train_main

if __name__ == "__main__":
    sys.exit(train_main())
