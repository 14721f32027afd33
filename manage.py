#!/usr/bin/env python3
"""Berth's Django entry point. The source root is platform/ (no __init__: it must not shadow the stdlib)."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent / "platform"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "berth.config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
