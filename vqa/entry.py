"""Imported first by every ``pipelines/*.py`` script: take the script's folder off the import path.

Why: ``pipelines/inspect.py`` shares its name with the standard library's ``inspect``, which torch and numpy
import. Python puts a script's folder first on ``sys.path``, so without this every entry point in that folder would
import our script instead of the standard module. This module imports nothing but ``os`` and ``sys``.
"""

import os
import sys

_script_dir = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else None
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _script_dir]
