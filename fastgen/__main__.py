"""``python -m fastgen``: the same as the ``fastgen`` command."""

from fastgen.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
