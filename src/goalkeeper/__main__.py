"""`python -m goalkeeper` is the `gk` command."""

from goalkeeper.cli.root import main

if __name__ == "__main__":
    main()
