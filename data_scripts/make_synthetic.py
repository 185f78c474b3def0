#!/usr/bin/env python3
"""Thin wrapper: `python data_scripts/make_synthetic.py [options]` is `bgad-mini data synth [options]`."""
import sys

from bgad_mini.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["data", "synth", *sys.argv[1:]]))
