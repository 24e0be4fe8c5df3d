"""One command-line layer for every command: settings from defaults, presets and flags; errors; the run's log.

A command is settings dataclasses plus a function that does the work. In a `__main__.py`:

    COMMAND = Command("python -m train", "Train one stage on one fold.", (TrainSettings,), train,
                      presets=train_presets, required=("stage",), log_file=lambda s: s.run_dir / "train.log")

    main = COMMAND.run                     # tests call this; failures raise
    cli = COMMAND.cli                      # failures: one `error:` line, exit 2 (usage) or 1 (failed work)

    if __name__ == "__main__":             # the console script `lnstage-train` points at `cli` too
        sys.exit(cli())

What the user gets from it:
- precedence: dataclass default < each preset layer (a stage preset, the dataset config's table, ...) <
  `--config FILE` < flags. `presets(given)` sees the flags given so far (e.g. `--dataset`, the stage) and
  returns the layers, so `--help` can show the dataset's own defaults;
- `--help` shows each flag's effective default and where it came from, grouped by settings class and by the
  `# section` comments of the class body; booleans take both `--x` and `--no-x`; required flags say so;
- `--print-config` prints the effective settings as TOML, one table per class, which `--config FILE` reads back;
- one error convention (`exit_status`): one line `error: ...` on stderr; exit 2 for usage (a bad flag, preset
  value or missing required flag), 1 for failed work; the traceback only with `--debug`, and always in the log;
- a log file (when `log_file` gives a path): command line, settings, everything printed, warnings, exit status,
  wall time and peak memory (`cache.run_log`).

The flags follow argparse-dataclass's conventions (field `patch_size_vox` is `--patch-size-vox`; metadata `help`,
`args` for a positional, `nargs`, `type`; `Literal` gives the choices), but `add_flags` builds them itself, because
argparse-dataclass 2.0 cannot do three things asked of this layer: a boolean gets only `--x` (default False) or only
`--no-x` (default True), so a preset's `true` cannot be turned off; its flags go straight into its own parser, not
into argument groups; and its defaults must be "not given" for presets to apply, so `--help` cannot show them.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cache.run_log import run_log
from cache.settings import SettingsError, format_settings, read_toml, values_from_mapping

NOT_GIVEN = argparse.SUPPRESS
EXIT_STATUS = ("exit status: 0 done; 1 the work failed (its reason on one `error:` line);\n"
               "2 a usage error (a bad or missing flag or setting). --debug shows the traceback.")


@dataclass(frozen=True)
class Preset:
    """Values of one settings class from one source (a preset file, a dataset config's table)."""

    source: str
    cls: type
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Command:
    """A command: its settings classes, the work function `work(*settings) -> exit status`, and where it logs."""

    prog: str
    description: str
    classes: tuple[type, ...]
    work: Callable[..., int]
    presets: Callable[[Mapping[str, Any]], list[Preset]] | None = None
    required: tuple[str, ...] = ()
    log_file: Callable[..., Path | None] | None = None
    epilog: str = ""
    check: Callable[..., tuple] | None = None  # settings -> settings, after parsing (e.g. resolve --shard auto)
    print_settings: bool = True  # False for quick inspection commands (`python -m cache ls`)

    def parse(self, argv: Sequence[str] | None = None) -> tuple:
        """The settings instances from `argv` (see the module docstring); raises SettingsError for usage errors."""
        return self.parse_all(argv)[0]

    def parse_all(self, argv: Sequence[str] | None) -> tuple[tuple, argparse.Namespace]:
        argv = list(sys.argv[1:] if argv is None else argv)
        given = {k: v for k, v in vars(self._parser({}, first_pass=True).parse_known_args(argv)[0]).items()
                 if v is not None}
        file_presets = config_file_presets(given.get("config"), self.classes)
        for preset in file_presets:
            given = {**preset.values, **given}
        layers = [*(self.presets(given) if self.presets else []), *file_presets]
        defaults = effective_defaults(self.classes, layers)
        namespace = self._parser(defaults).parse_args(argv)
        for name in [k for k, v in vars(namespace).items() if v is None and k in self.required]:
            delattr(namespace, name)  # an unset required positional
        missing = [name for name in self.required if not hasattr(namespace, name)]
        if missing and not namespace.print_config:
            raise SettingsError(self._missing(missing))
        settings = tuple(_instance(cls, namespace, defaults) for cls in self.classes)
        if self.check is not None:
            settings = self.check(*settings)
        return settings, namespace

    def run(self, argv: Sequence[str] | None = None) -> int:
        """Parse, then `--print-config`, or do the work under the log file; failures raise."""
        settings, namespace = self.parse_all(argv)
        if namespace.print_config:
            print(settings_toml(settings, f"{self.prog} {' '.join(sys.argv[1:] if argv is None else argv)}"))
            return 0
        path = self.log_file(*settings) if self.log_file else None
        with run_log(path, self.prog, argv, settings_toml(settings)) as run:
            if self.print_settings and rank_is_main():
                print(format_settings(*settings))
            run.exit_status = self.work(*settings)
        return run.exit_status

    def cli(self, argv: Sequence[str] | None = None) -> int:
        """`run` for `python -m` and console scripts: a failure is one `error:` line and exit 2 or 1."""
        return exit_status(self.run, argv)

    def _parser(self, defaults: Mapping[str, tuple[Any, str]], first_pass: bool = False) -> argparse.ArgumentParser:
        parser = _Parser(prog=program_name(self.prog), usage=self.usage(), description=self.description,
                         epilog="\n\n".join(filter(None, [self.epilog, EXIT_STATUS])), add_help=not first_pass,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
        for cls in self.classes:
            describe = _class_summary(cls) != self.description
            add_flags(parser, cls, defaults, self.required, first_pass, describe)
        common = parser.add_argument_group("every command")
        common.add_argument("--config", metavar="FILE", default=NOT_GIVEN if first_pass else None,
                            help="TOML file of settings (tables named by class, as --print-config writes them); "
                                 "over presets, under flags")
        common.add_argument("--print-config", action="store_true",
                            help="print the effective settings as TOML (feed back with --config) and exit")
        common.add_argument("--debug", action="store_true", help="show the traceback of an error")
        return parser

    def usage(self) -> str:
        """`python -m train {ts1,ts2,ts3} [flags]`: positionals and required flags, then the rest."""
        words = [program_name(self.prog)]
        for cls in self.classes:
            for f in dataclasses.fields(cls):
                hint = typing.get_type_hints(cls)[f.name]
                shown = ("{" + ",".join(typing.get_args(hint)) + "}" if typing.get_origin(hint) is typing.Literal
                         else f.name.upper())
                if not flag_name(f).startswith("-"):
                    words.append(shown if f.name in self.required else f"[{shown}]")
                elif f.name in self.required:
                    words.append(f"{flag_name(f)} {shown}")
        return " ".join([*words, "[flags]"])

    def _missing(self, names: list[str]) -> str:
        """`--run is required: run folder holding fold<K>/ ...` (one), or the flags that are missing (several)."""
        fields = {f.name: f for cls in self.classes for f in dataclasses.fields(cls)}
        flags = [flag_name(fields[name]) for name in names]
        if len(flags) == 1:
            return f"{flags[0]} is required: {fields[names[0]].metadata.get('help', names[0])}"
        return (f"{', '.join(flags[:-1])} and {flags[-1]} are required; {program_name(self.prog)} --help says what "
                "each takes")


@dataclass(frozen=True)
class CommandGroup:
    """Subcommands (`python -m evaluate predict ...`); `default` runs when the first word is no subcommand."""

    prog: str
    description: str
    commands: Mapping[str, tuple[Command, str]]  # name -> (command, one-line help)
    default: str | None = None

    def run(self, argv: Sequence[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv and argv[0] in self.commands:
            return self.commands[argv[0]][0].run(argv[1:])
        if argv and argv[0] in ("-h", "--help") or (not argv and self.default is None):
            print(self.help())
            return 0 if argv else 2
        if self.default is None:
            raise SettingsError(f"unknown command {argv[0]!r}; choose one of {', '.join(self.commands)} "
                                f"(see {program_name(self.prog)} --help)")
        return self.commands[self.default][0].run(argv)

    def cli(self, argv: Sequence[str] | None = None) -> int:
        """`run` for `python -m` and console scripts: a failure is one `error:` line and exit 2 or 1."""
        return exit_status(self.run, argv)

    def help(self) -> str:
        width = max(len(name) for name in self.commands)
        lines = [f"usage: {program_name(self.prog)} {{{','.join(self.commands)}}} [flags]", "", self.description,
                 "", "commands:"]
        for name, (_, text) in self.commands.items():
            lines.append(f"  {name:<{width}}  {text}" + (" (default)" if name == self.default else ""))
        lines += ["", f"{program_name(self.prog)} COMMAND --help shows a command's flags and their defaults.", "",
                  EXIT_STATUS]
        return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """Usage errors raise SettingsError (one line, exit 2 by `exit_status`) instead of printing the usage."""

    def error(self, message: str) -> typing.NoReturn:
        raise SettingsError(f"{message} (see {self.prog} --help)")


def program_name(prog: str) -> str:
    """`lnstage-evaluate predict` when run as that console script, else the `python -m evaluate predict` given."""
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return " ".join([script, *prog.split()[3:]]) if script.startswith("lnstage-") else prog


def exit_status(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)`, turning an exception into one `error:` line and exit 2 (usage) or 1 (failed work)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(arguments)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output (`| head`) has gone: nothing more to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as error:  # every failure: one line here, the traceback with --debug and in the log
        if "--debug" in arguments:
            raise
        print(f"error: {error_line(error)}", file=sys.stderr)
        return 2 if isinstance(error, SettingsError) else 1


def error_line(error: BaseException) -> str:
    """The message of an error on one line. Our own errors, OSError and ValueError say what to do; any other
    (KeyError, TypeError, ...) is a bug: it is named, with the way to its traceback."""
    text = " ".join(str(error).split()) or type(error).__name__
    if _ours(error) or isinstance(error, (OSError, ValueError)):
        return text
    return f"{text} ({type(error).__name__}, unexpected: rerun with --debug for the traceback and report it)"


def _ours(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in ("cache", "preprocess", "train", "evaluate", "benchmarks")


# ---------------------------------------------------------------- flags from dataclass fields


def flag_name(f: dataclasses.Field) -> str:
    """The field's flag: `--field-name`, or the first of its metadata `args` (a positional, or a flag whose
    other `args` are short forms such as `-i`)."""
    args = f.metadata.get("args")
    return args[0] if args else "--" + f.name.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, cls: type, defaults: Mapping[str, tuple[Any, str]],
              required: Sequence[str] = (), first_pass: bool = False, describe: bool = True) -> None:
    """One argument group per `# section` of `cls`, each field a flag whose default is its effective value."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for title, names in field_sections(cls):
        group = parser.add_argument_group(title, _class_summary(cls) if describe and title == cls.__name__ else None)
        for name in names:
            f = fields[name]
            value, source = defaults.get(name, (_default(f), ""))
            unset = name in required and not source  # a required field no preset or config file set
            _add_field(group, f, hints[name], value, source, name in required, first_pass or unset)


def _add_field(group, f: dataclasses.Field, hint: Any, value: Any, source: str, required: bool,
               first_pass: bool) -> None:
    hint = _strip_optional(hint)
    kwargs: dict[str, Any] = {"help": _help_text(f, value, source, required)}
    name = flag_name(f)
    positional = not name.startswith("-")
    if positional:
        kwargs["nargs"] = f.metadata.get("nargs", "?")
    else:
        kwargs["dest"] = f.name
    kwargs["default"] = NOT_GIVEN if first_pass else value
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
        kwargs.update(type=type(choices[0]), choices=choices)
    elif typing.get_origin(hint) is tuple:
        kwargs.update(nargs=f.metadata.get("nargs", "+"), type=f.metadata.get("type", typing.get_args(hint)[0]))
    elif hint is bool:
        kwargs["action"] = Switch
    else:
        kwargs["type"] = f.metadata.get("type", hint)
    if f.metadata.get("metavar"):
        kwargs["metavar"] = f.metadata["metavar"]
    if positional and first_pass:  # argparse checks a positional's default against its choices; None means unset
        kwargs["default"] = None
        kwargs["nargs"] = "*" if kwargs["nargs"] == "+" else kwargs["nargs"]  # `--help` must not stop for want of it
    group.add_argument(name, *f.metadata.get("args", ())[1:], **kwargs)  # short forms after the name


class Switch(argparse.Action):
    """`--x` sets a boolean, `--no-x` clears it (argparse's BooleanOptionalAction adds its own default text)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        names = [n for s in option_strings for n in (s, "--no-" + s[2:])]
        super().__init__(names, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, not option_string.startswith("--no-"))

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


def _help_text(f: dataclasses.Field, value: Any, source: str, required: bool) -> str:
    text = f.metadata.get("help", "")
    if required and not source:
        shown = "required"
    else:
        shown = f"default: {_shown(value)}"
    return f"{text} ({shown}{', from ' + source if source else ''})".replace("%", "%%")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value)) or "none"
    if value == "" or value is None:
        return "not set" if value is None else "empty"
    return str(value)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _class_summary(cls: type) -> str | None:
    return (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ") or None


def field_sections(cls: type) -> list[tuple[str, list[str]]]:
    """Fields of `cls` grouped by the `# comment` lines of its body: [(title, [field names])], in order.

    Fields before the first comment are titled by the class name; a class without comments is one group.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # a class defined where its source cannot be read (an interactive session)
        return [(cls.__name__, names)]
    sections: list[tuple[str, list[str]]] = [(cls.__name__, [])]
    for line in source.splitlines():
        comment = re.match(r"^    # (.+)$", line)
        assignment = re.match(r"^    (\w+)\s*:", line)
        if comment:
            sections.append((f"{cls.__name__}: {comment.group(1)}", []))
        elif assignment and assignment.group(1) in names:
            sections[-1][1].append(assignment.group(1))
    placed = {n for _, group in sections for n in group}
    sections[0][1].extend(n for n in names if n not in placed)
    return [(title, group) for title, group in sections if group]


# ---------------------------------------------------------------- layers, config files, printed config


def effective_defaults(classes: Sequence[type], layers: Sequence[Preset]) -> dict[str, tuple[Any, str]]:
    """{field: (value, source)} after applying the layers in order over the dataclass defaults."""
    result = {f.name: (_default(f), "") for cls in classes for f in dataclasses.fields(cls)}
    for layer in layers:
        for name, value in values_from_mapping(layer.cls, dict(layer.values), layer.source).items():
            result[name] = (value, layer.source)
    return result


def split_table(classes: Sequence[type], table: Mapping[str, Any], source: str) -> list[Preset]:
    """One TOML table that may set fields of several classes -> one Preset per class; unknown keys are errors."""
    names = {cls: {f.name for f in dataclasses.fields(cls)} for cls in classes}
    known = set().union(*names.values())
    unknown = sorted(set(table) - known)
    if unknown:
        raise SettingsError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [Preset(source, cls, {k: v for k, v in table.items() if k in names[cls]}) for cls in classes]


def config_file_presets(path: str | None, classes: Sequence[type]) -> list[Preset]:
    """The tables of a `--config` file (as `--print-config` writes them), checked against the command's classes."""
    if not path:
        return []
    data = read_toml(path)
    by_name = {cls.__name__: cls for cls in classes}
    unknown = sorted(set(data) - set(by_name))
    if unknown:
        raise SettingsError(f"--config {path}: unknown table(s) {', '.join(unknown)}; this command reads "
                            f"{', '.join(by_name)}")
    return [Preset(f"--config {path}", by_name[name], values) for name, values in data.items()]


def _instance(cls: type, namespace: argparse.Namespace, defaults: Mapping[str, tuple[Any, str]]) -> Any:
    values = {f.name: getattr(namespace, f.name, defaults[f.name][0]) for f in dataclasses.fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        raise SettingsError(f"{cls.__name__}: {error}") from error


def settings_toml(settings: Sequence[Any], header: str = "") -> str:
    """Effective settings as TOML, one table per class; a value of None is left out (it is the default)."""
    lines = [f"# {header.strip()}", "# effective settings; feed back with --config FILE", ""] if header else []
    for instance in settings:
        lines.append(f"[{type(instance).__name__}]")
        for f in dataclasses.fields(instance):
            value = getattr(instance, f.name)
            lines.append(f"# {f.name} is not set" if value is None else f"{f.name} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def rank_is_main() -> bool:
    """False in the worker ranks of a torchrun job (they neither log to files nor print the settings twice)."""
    return os.environ.get("RANK", "0") == "0"
