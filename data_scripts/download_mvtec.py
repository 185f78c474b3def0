#!/usr/bin/env python3
"""Thin wrapper: `python data_scripts/download_mvtec.py [options]` is `bgad-mini data mvtec [options]`."""
import sys

from bgad_mini.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["data", "mvtec", *sys.argv[1:]]))
