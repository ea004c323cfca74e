"""``python -m maomao``: the same as the ``maomao`` command."""

from maomao.cli import main

if __name__ == "__main__":
    main()
