"""Train the toy world's models and write its data files: `python -m synthvision.toy --help`."""

from synthvision.toy.cli import main

main()
