"""Command line: ``python -m diger_lib.cli setup-data [--source DIR] [--dest data] [--copy]``."""
from __future__ import annotations

import argparse
import sys

from .data import DataError, default_source, setup_data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="diger_lib.cli")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sd = sub.add_parser("setup-data", help="link/copy the datasets into data/ and verify their SHA-256")
    sd.add_argument("--source", default=None, help="folder holding Beauty/ Instruments/ Yelp/ "
                    "(default: $DIGER_DATA or ../shared/data)")
    sd.add_argument("--dest", default="data")
    sd.add_argument("--copy", action="store_true", help="copy instead of symlink")
    args = ap.parse_args(argv)
    if args.cmd == "setup-data":
        try:
            files = setup_data(args.source, args.dest, copy=args.copy)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{len(files)} data files verified (sha256) in {args.dest}/ from {args.source or default_source()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
