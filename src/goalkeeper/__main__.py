"""`python -m goalkeeper` is the `gk` command."""

from goalkeeper.cli.app import main

if __name__ == "__main__":
    main()
