#!/usr/bin/env python
"""Run the example blog's management commands: ``python example/manage.py runserver``."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    here = Path(__file__).resolve().parent
    # The example's own packages (exampleproject, blog) come first; the checkout comes
    # next so that the demo runs from a clone even when roan is not installed.
    for index, path in enumerate((str(here), str(here.parent))):
        if path not in sys.path:
            sys.path.insert(index, path)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
