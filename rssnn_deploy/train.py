"""``python -m rssnn_deploy.train`` kept as an entry point for existing torchrun command
lines; the training code lives in :mod:`rssnn_deploy.training`."""
import sys

from rssnn_deploy.cli.train_args import train_main

if __name__ == "__main__":
    sys.exit(train_main())
