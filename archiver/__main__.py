"""Lets ``python -m archiver`` behave like the console script."""

from archiver.cli import main

main()
