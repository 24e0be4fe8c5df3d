"""`python -m cache ls|info|verify|diff|export`: inspect, check and copy shared cache files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cache import commands
from cache.reader import CacheError
from cache.settings import SettingsError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cache", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("ls", help="list a folder's cache files with their labels and settings").add_argument("folder")
    sub.add_parser("info", help="show one cache file").add_argument("file")
    verify = sub.add_parser("verify", help="recompute checksums and schema; with --dataset, list missing or "
                                           "stale scans; exit 1 naming each problem")
    verify.add_argument("paths", nargs="*", help="cache files or folders (default: the dataset's cache folder)")
    verify.add_argument("--dataset", help="dataset config: compare the folder with its manifest and settings")
    verify.add_argument("--root", help="data root of the dataset (else its config / environment)")
    verify.add_argument("--cache-root", help="cache root (else $LNSTAGE_CACHE_ROOT / the config)")
    verify.add_argument("--skip-inputs", action="store_true", help="do not re-hash the input files")
    diff = sub.add_parser("diff", help="why two cache files or folders differ (settings, inputs, code version)")
    diff.add_argument("a")
    diff.add_argument("b")
    export = sub.add_parser("export", help="copy cache files, compressed for transfer (the reader accepts them)")
    export.add_argument("paths", nargs="+", help="cache files or folders")
    export.add_argument("--out", required=True, help="target folder")
    export.add_argument("--compress", action=argparse.BooleanOptionalAction, default=True,
                        help="gzip the datasets (default: yes)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "ls":
            return commands.ls(args.folder)
        if args.command == "info":
            return commands.info(args.file)
        if args.command == "verify":
            if not args.paths and not args.dataset:
                print("error: give cache files or folders, or --dataset NAME", file=sys.stderr)
                return 2
            return commands.verify(args.paths, args.dataset, args.root, args.cache_root, not args.skip_inputs)
        if args.command == "diff":
            return commands.diff(args.a, args.b)
        return commands.export(args.paths, args.out, args.compress)
    except (CacheError, SettingsError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
