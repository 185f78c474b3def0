#!/usr/bin/env python3
"""Thin wrapper: `python data_scripts/download_btad.py [options]` is `bgad-mini data btad [options]`."""
import sys

from bgad_mini.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["data", "btad", *sys.argv[1:]]))
