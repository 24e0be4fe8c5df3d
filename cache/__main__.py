"""`python -m cache ls|info|verify|diff|export`: inspect, check and copy shared cache files."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from cache import commands
from cache.cli import Command, CommandGroup
from cache.settings import SettingsError


def _positional(name: str, help_text: str, nargs: str | None = None) -> dict:
    return {"args": [name], "help": help_text, **({"nargs": nargs} if nargs else {})}


@dataclass(frozen=True)
class LsSettings:
    """List a folder's cache files."""

    folder: str = field(default="", metadata=_positional("folder", "folder of cache files"))


@dataclass(frozen=True)
class InfoSettings:
    """Show one cache file."""

    file: str = field(default="", metadata=_positional("file", "cache file (.h5)"))


@dataclass(frozen=True)
class VerifySettings:
    """Recompute checksums and schema; with a dataset, also list its missing and stale scans."""

    paths: tuple[str, ...] = field(
        default=(), metadata=_positional("paths", "cache files or folders (default: the dataset's cache folder)", "*")
    )
    dataset: str = field(default="", metadata={"help": "dataset config: compare the folder with its manifest and "
                                                       "settings"})
    root: str = field(default="", metadata={"help": "data root of the dataset (else its config / environment)"})
    cache_root: str = field(default="", metadata={"help": "cache root (else $LNSTAGE_CACHE_ROOT / the config)"})
    skip_inputs: bool = field(default=False, metadata={"help": "do not re-hash the input files"})


@dataclass(frozen=True)
class DiffSettings:
    """Why two cache files or folders differ (settings, inputs, code version)."""

    a: str = field(default="", metadata=_positional("a", "first cache file or folder"))
    b: str = field(default="", metadata=_positional("b", "second cache file or folder"))


@dataclass(frozen=True)
class ExportSettings:
    """Copy cache files, compressed for transfer (the reader accepts them)."""

    paths: tuple[str, ...] = field(default=(), metadata=_positional("paths", "cache files or folders", "+"))
    out: str = field(default="", metadata={"help": "target folder"})
    compress: bool = field(default=True, metadata={"help": "gzip the datasets"})


def verify(settings: VerifySettings) -> int:
    if not settings.paths and not settings.dataset:
        raise SettingsError("verify: give cache files or folders, or --dataset NAME")
    return commands.verify(list(settings.paths), settings.dataset or None, settings.root or None,
                           settings.cache_root or None, not settings.skip_inputs)


def _command(name: str, cls: type, work, required: tuple[str, ...] = ()) -> Command:
    return Command(f"python -m cache {name}", cls.__doc__.strip(), (cls,), work, required=required,
                   print_settings=False)


GROUP = CommandGroup("python -m cache", "Inspect, check and copy shared cache files.", {
    "ls": (_command("ls", LsSettings, lambda s: commands.ls(s.folder), ("folder",)),
           "list a folder's cache files with their labels and settings"),
    "info": (_command("info", InfoSettings, lambda s: commands.info(s.file), ("file",)), "show one cache file"),
    "verify": (_command("verify", VerifySettings, verify),
               "recompute checksums and schema; with --dataset, list missing or stale scans; exit 1 naming each "
               "problem"),
    "diff": (_command("diff", DiffSettings, lambda s: commands.diff(s.a, s.b), ("a", "b")),
             "why two cache files or folders differ (settings, inputs, code version)"),
    "export": (_command("export", ExportSettings, lambda s: commands.export(list(s.paths), s.out, s.compress),
                        ("out",)),
               "copy cache files, compressed for transfer (the reader accepts them)"),
})


main = GROUP.run  # Run one subcommand; failures raise
cli = GROUP.cli  # for python -m and the console script: a failure is one `error:` line, exit 2 or 1


if __name__ == "__main__":
    sys.exit(cli())
