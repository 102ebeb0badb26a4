"""The command line (USAGE below; `cprof --help`).  One argparse parser: the profiling
run's options (_RUN_OPTIONS), and report, export and compare as its subparsers.  A run's script (or
-m's module) and everything after it are the program's: _split_run_args finds where
that starts from the options the parser itself knows.  The run drives api.Profile,
as a program using the API would.

On a profiling run, -o picks the format by the file name (exporters.format_for_path,
from the exporters' REGISTRY); any other name (out.json) gets the cprof JSON profile.

Problems the user can fix print one sentence and exit 2; the profiled program's
output, exceptions and exit code pass through, and its profile is still written.

Start-up is part of every run's cost: a profiling run with a plain command line is read
without argparse (_parse_run; argparse and re only for help, the commands and any other
line), and the rest is imported where it is used (the exporters' registry only to show
--help or write an export, traceback only to print one).
"""
from __future__ import annotations

# _signal as signal: the signal module's C part, whose functions take and give ints; the
# module wraps them in enums, and importing enum cost an empty run under cprof 30 million
# instructions (a third of its start-up)
import _signal as signal
import builtins
import errno
import os
import sys
import time

from . import __version__
from ._cprof import CprofError, builtin_counters, list_counters, malloc_interposer
from .api import Profile
from .forkmask import ForkMask

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, NoReturn

    from .model import Profile as ProfileData

EXIT_USAGE = 2


def _terminal_width() -> int:
    """The width shutil.get_terminal_size() gives (COLUMNS, else the terminal of stdout,
    else 80), found without importing shutil, which imports zlib, bz2 and lzma."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def _classes() -> tuple[type, type]:
    """argparse's formatter and parser as cprof uses them, made the first time a command
    line goes to argparse (help, a command, anything _parse_run leaves to it): a profiling
    run with a plain command line imports neither argparse nor re."""
    global _made
    if _made is not None:
        return _made
    import argparse

    class _Formatter(argparse.HelpFormatter):
        """argparse's help formatter, cheap to make: argparse makes one at every
        add_argument, to validate it.  The width without shutil; on 3.14+, the colour theme
        (argparse's _set_color imports _colorize, which imports dataclasses and inspect:
        60 million instructions) only when help is formatted, the one time it is used."""

        def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                     width: int | None = None, **kwargs: Any) -> None:
            super().__init__(prog, indent_increment, max_help_position,
                             _terminal_width() - 2 if width is None else width, **kwargs)

        # 3.14 only: 3.15's argparse defers the theme itself (_theme is a property there, which
        # this override broke: every cprof command failed with "badly formed help string")
        if not hasattr(argparse.HelpFormatter, "_get_theme_and_decolor"):
            def _set_color(self, color: bool) -> None:  # kept for _theme, set below when asked
                self.__dict__.pop("_theme", None)
                self.__dict__.pop("_decolor", None)
                self._cprof_color = color

            def __getattr__(self, name: str) -> Any:
                if name in ("_theme", "_decolor") and "_cprof_color" in self.__dict__:
                    super()._set_color(self._cprof_color)  # type: ignore[misc]
                    return self.__dict__[name]
                raise AttributeError(name)


    class _Parser(argparse.ArgumentParser):
        # help that names the export formats, filled in when help is shown (the exporters'
        # registry is not imported for a profiling run)
        late: Callable[[argparse.ArgumentParser], None] | None = None

        def error(self, message: str) -> NoReturn:  # one sentence, exit 2, no usage dump
            raise CprofError(f"{message}; see cprof --help")

        def _fill(self) -> None:
            late, self.late = self.late, None
            if late is not None:
                late(self)

        # *args: 3.15's argparse takes a formatter argument here, earlier ones none
        def format_usage(self, *args: Any) -> str:
            self._fill()
            return super().format_usage(*args)

        def format_help(self, *args: Any) -> str:
            self._fill()
            return super().format_help(*args)

    _made = (_Formatter, _Parser)
    return _made


_made: tuple[type, type] | None = None


USAGE = """cprof [options] script.py [args ...]
       cprof [options] -m module [args ...]
       cprof report FILE [--sort=COUNTER] [--limit=N] [--all|--focus=P] [--html [-o OUT] [--open]]
       cprof export FILE --format {%s} [--counter=C] [-o OUT]
       cprof compare BEFORE.json AFTER.json [--counter=C] [--fail-above=PCT [--function=NAME]]
       cprof attach PID [--duration=SECONDS] [--counter=LIST] [-o FILE] [--sort ...]
       cprof --list-counters [--pmu]"""


def _count(text: str) -> int:
    """--limit's value: a whole number, 0 or more."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        import argparse
        raise argparse.ArgumentTypeError(f"'{text}' is not a count; give 0 (all) or more")
    return n


# The options of a profiling run: (option strings, dest, whether it takes a value, default,
# conversion of the value, metavar, help).  _parse_run reads a plain command line with them
# alone; _parser gives them to argparse, which shows the help and reads every other line.
_RUN_OPTIONS: tuple[tuple[tuple[str, ...], str, bool, Any, Callable[[str], Any] | None, str | None, str], ...] = (
    (("--counter", "-c"), "counter", True, "cpu,wall", None, None,
     "comma-separated counters, first one sorts the report (default: cpu,wall)"),
    (("-o", "--output"), "output", True, None, None, None,
     ("write the profile here instead of printing a report: the JSON profile, or by the "
      "name's ending (see the formats)")),
    (("--sort",), "sort", True, None, None, None, "sort by COUNTER (self), COUNTER.total, or calls"),
    (("--limit",), "limit", True, 25, _count, None, "functions in the report (0 = all)"),
    (("--all",), "all", False, False, None, None,
     ("list every function (by default the standard library, site-packages and cprof fold "
      "into one line per library)")),
    (("--focus",), "focus", True, None, None, "PATTERN",
     ("list only the functions whose module or file matches PATTERN (fnmatch globs, "
      "comma-separated: mypkg,src/*); the rest fold into one [other] line")),
    (("--trace",), "trace", True, None, None, "PATTERN",
     ("profile only the code PATTERN names (app: the program's own code; --focus's patterns); "
      "what the rest costs is charged to the traced function that called it, as "
      "'NAME [untraced]' calls")),
    (("--async",), "async_mode", False, False, None, None,
     ("asyncio-aware: a coroutine's calls count calls, not resumes; the time it is suspended "
      "is in its total, as an [await] child; and a per-task view (report --by-task)")),
    (("--all-call-sites",), "all_call_sites", False, False, None, None,
     ("3.12+: keep watching call sites that called a Python function or a class, so a C function called "
      "later from the same site is not missed (slower)")),
    (("--distributions",), "distributions", False, False, None, None,
     ("keep a histogram of every call's cost per function (p50/p99/max in the report, "
      "cprof report --hist FUNC)")),
    (("--slow-calls",), "slow_calls", True, 0, int, "K",
     ("keep the K slowest calls per function (by the first counter) with the repr of their "
      "arguments")),
    (("--no-compensate",), "no_compensate", False, False, None, None,
     ("keep cprof's own per-call cost in the numbers (by default it is calibrated at "
      "start-up and taken out)")),
    (("--recalibrate",), "recalibrate", False, False, None, None,
     ("measure cprof's own per-call cost afresh instead of confirming the figure cached from "
      "an earlier run (CPROF_NO_CACHE=1: no cache at all)")),
    (("--on-signal",), "on_signal", True, None, None, "SIGNAL",
     ("start the program unprofiled; each SIGNAL (USR2, USR1) opens or closes a profiling "
      "window, written to its own file (-o out.json: out.1.json, out.2.json, ...)")),
    (("--window",), "window", True, None, float, "SECONDS",
     ("profile consecutive windows of SECONDS, each written to its own file (-o out.json: "
      "out.1.json, ...)")),
    (("--every",), "every", True, None, float, "SECONDS",
     "with --window: open a window every SECONDS (default: one after another)"),
    (("--keep",), "keep", True, None, int, "N",
     "with --window: keep the last N window files (delete older ones this run wrote)"),
    (("--follow-children",), "follow_children", False, False, None, None,
     ("profile the program's Python child processes too (multiprocessing, subprocess running "
      "this Python): each writes NAME.<pid>.json beside -o, and cprof report NAME.json sums them "
      "(--by-process: each)")),
    (("--list-counters",), "list_counters", False, False, None, None, "list the counters and exit"),
    (("--pmu",), "pmu", False, False, None, None,
     "with --list-counters: list the events of the PMUs libpfm4 detects"),
    (("-m",), "module", True, None, None, "MODULE",
     "run a library module as a script (what follows its name is its arguments)"),
)
_EXCLUSIVE = ("--all", "--focus")   # argparse refuses both; so does _parse_run


def _add_options(p: argparse.ArgumentParser, rows: Iterable[tuple]) -> dict[str, argparse.Action]:
    """Add options from _RUN_OPTIONS' rows to an argparse parser; its actions by first
    option string.  --all and --focus go into a group that allows one of them."""
    actions, group = {}, None
    for flags, dest, takes_value, default, convert, metavar, text in rows:
        to: Any = p
        if flags[0] in _EXCLUSIVE:
            group = group or p.add_mutually_exclusive_group()
            to = group
        if takes_value:
            actions[flags[0]] = to.add_argument(*flags, dest=dest, default=default, type=convert,
                                                metavar=metavar, help=text)
        else:
            actions[flags[0]] = to.add_argument(*flags, dest=dest, action="store_true", help=text)
    return actions


def _parse_run(argv: list[str]) -> tuple[Any, list[str]] | None:
    """(options, the program's command line) of a profiling run, read without argparse
    when the command line is plain: each option spelled in full (--limit=5, --limit 5,
    -c cpu, -ccpu) and each value converted without error; the program starts where
    _split_run_args says.  None for anything else (help, --version, an abbreviation, an
    unknown option, a bad value, --all with --focus): argparse reads that line and says
    in its words what is wrong."""
    import types
    rows = {flag: row for row in _RUN_OPTIONS for flag in row[0]}
    opts: dict[str, Any] = {row[1]: row[3] for row in _RUN_OPTIONS}
    opts["command"] = None   # argparse's dest of the commands
    i, program = 0, None
    while i < len(argv) and program is None:
        a = argv[i]
        if a == "--":
            program = argv[i + 1:]
            break
        if not a.startswith("-") or a == "-":
            program = argv[i:]
            break
        flag, eq, value = a.partition("=") if a.startswith("--") else (a[:2], "", a[2:])
        row = rows.get(flag)
        if row is None or value.startswith("=") and not eq:
            return None
        _, dest, takes_value, _, convert, _, _ = row
        joined = bool(eq or value)
        if not takes_value:
            if joined:
                return None
            opts[dest] = True
        else:
            if not joined:
                i += 1
                if i == len(argv) or argv[i].startswith("-"):
                    return None
                value = argv[i]
            try:
                opts[dest] = value if convert is None else convert(value)
            except Exception:
                return None
            if flag == "-m":
                program = argv[i + 1:]
        i += 1
    if opts["all"] and opts["focus"] is not None:
        return None
    return types.SimpleNamespace(**opts), argv[i:] if program is None else program


def _parser() -> argparse.ArgumentParser:
    """The whole command line: the profiling run's options, and the commands report,
    export and compare as subparsers.  A run's script and its arguments are not in it:
    _split_run_args finds where they start, from the options this parser knows."""
    _Formatter, _Parser = _classes()
    p = _Parser(prog="cprof", usage=USAGE, formatter_class=_Formatter,
                description="Profile a Python program: attribute counters "
                "(CPU time, wall time, context switches) to each function.",
                epilog="Everything after the script (or -m's module) is the program's. "
                "cprof COMMAND --help describes a command.")
    k = next(i for i, row in enumerate(_RUN_OPTIONS) if row[0][0] == "--list-counters")
    output = _add_options(p, _RUN_OPTIONS[:k])["-o"]
    p.add_argument("--version", action="version", version=f"cprof {__version__}")
    _add_options(p, _RUN_OPTIONS[k:])

    def late(p: argparse.ArgumentParser) -> None:
        from . import exporters
        p.usage = USAGE % ",".join(exporters.FORMATS)
        output.help = ("write the profile here instead of printing a report: the JSON profile, "
                       "or by the name's ending " + exporters.endings_help())
    p.late = late  # type: ignore[attr-defined]
    commands = p.add_subparsers(prog="cprof", title="commands", dest="command",
                                metavar="{report,export,compare,attach}")
    for name, (options, short, description) in _COMMANDS.items():
        # a command's options are added when it runs or shows its help (export's need
        # the exporters' registry)
        sub = commands.add_parser(name, help=short, description=description,
                                  formatter_class=_Formatter)
        sub.late = options  # type: ignore[attr-defined]
    return p


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subparsers of `parser`, by command name (their options added: _command)."""
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _focus_options(p: argparse.ArgumentParser) -> None:
    _add_options(p, [row for row in _RUN_OPTIONS if row[0][0] in _EXCLUSIVE])


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("file")
    p.add_argument("--sort")
    p.add_argument("--limit", type=_count, default=25)
    _focus_options(p)
    p.add_argument("--html", action="store_true", help="write the HTML report (default: FILE with .html)")
    p.add_argument("-o", "--output", help="where to write the HTML report")
    p.add_argument("--open", action="store_true", help="open the HTML report in a web browser")
    p.add_argument("--counter", "-c", help="the counter the HTML report shows first, or "
                   "that --hist charts")
    p.add_argument("--by-task", action="store_true", help="the asyncio tasks of a profile "
                   "made with --async: wall from creation to done, running and awaiting")
    p.add_argument("--hist", metavar="FUNC", help="chart the per-call distribution of one "
                   "function (a profile recorded with --distributions)")
    p.add_argument("--by-process", action="store_true", help="a --follow-children profile: a row "
                   "per process, then each process's own report")
    p.set_defaults(run=_report)


def _export_options(p: argparse.ArgumentParser) -> None:
    from . import exporters
    p.add_argument("file")
    p.add_argument("--format", "-f", required=True, choices=exporters.FORMATS)
    p.add_argument("--counter", "-c", help="the counter to write (" + ", ".join(
                       f.name for f in exporters.REGISTRY if not f.multi_counter) + ") or to show first ("
                   + ", ".join(f.name for f in exporters.REGISTRY if f.multi_counter)
                   + "); default: the profile's first")
    p.add_argument("-o", "--output", help="the file to write (default: beside FILE, named after "
                   "it, its counter and unit)")
    p.set_defaults(run=_export)


def _compare_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--counter", "-c", help="compare only this counter (default: every counter of both)")
    p.add_argument("--limit", type=_count, default=25, help="functions shown (0 = all)")
    p.add_argument("--fail-above", type=float, metavar="PCT",
                   help="exit 1 if the profiled region (or --function) grew more than PCT percent")
    p.add_argument("--function", help="with --fail-above: the function whose total is checked")
    p.set_defaults(run=_compare)


def _attach_options(p: argparse.ArgumentParser) -> None:
    from . import attach  # the logic is there
    attach.add_options(p)


# the commands: (their options, the line in cprof --help, the description in their own)
_COMMANDS = {
    "report": (_report_options,
               "print the report of a saved profile (--html: write it as a web page)",
               ("Print the report of a saved cprof profile, "
                "or with --html write it as one self-contained HTML page.")),
    "export": (_export_options, "write a saved profile for another viewer",
               "Write a saved cprof profile for another viewer."),
    "compare": (_compare_options,
                "the change of each counter per function between two profiles",
                ("Per function, the change of each counter from one profile to another, "
                 "largest first.")),
    "attach": (_attach_options, "profile a running Python 3.14+ process for a while",
               ("Profile a running Python 3.14+ process (sys.remote_exec) for --duration "
                "seconds or until Ctrl-C, then print its report or write -o; the process is "
                "left as it was.")),
}


def _split_run_args(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """(cprof's own options, the program's command line) of a profiling run.  The
    program's starts at the script (the first word that is neither an option nor an
    option's value) or right after -m's module, as with python -m: `cprof -m mod -o x`
    gives -o to the module.  Which options take a value is asked of the parser, long
    ones also abbreviated (--slow 3) or with =, short ones also joined (-ccpu, -mmod)."""
    takes_value = {s: a.nargs != 0 for a in parser._actions for s in a.option_strings}
    longs = [s for s in takes_value if s.startswith("--")]
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return argv[:i], argv[i + 1:]
        if not a.startswith("-") or a == "-":
            return argv[:i], argv[i:]
        if a.startswith("--"):
            name, eq, _ = a.partition("=")
            found = [name] if name in takes_value else [s for s in longs if s.startswith(name)]
            option = found[0] if len(found) == 1 else None   # unknown or ambiguous: argparse says so
            joined = bool(eq)
        else:
            option = a[:2] if a[:2] in takes_value else None
            joined = len(a) > 2
        i += 2 if option is not None and takes_value[option] and not joined else 1
        if option == "-m":
            return argv[:i], argv[i:]
    return argv, []


def _report(opts: argparse.Namespace) -> int:
    from . import children, exporters, report
    profile = children.load(opts.file)   # a --follow-children run's processes, summed
    if opts.by_process:
        sys.stdout.write(children.format_processes(profile, sort=opts.sort, limit=opts.limit,
                                                   all=opts.all, focus=opts.focus))
        return 0
    if opts.hist:
        sys.stdout.write(report.format_hist(profile, opts.hist, opts.counter))
        return 0
    if opts.by_task:
        from . import asyncmode
        sys.stdout.write(asyncmode.format_tasks(profile, limit=opts.limit))
        return 0
    if not (opts.html or opts.output or opts.open):
        if opts.counter:
            raise CprofError("--counter chooses what the HTML report shows first; add --html, "
                             "or use --sort for the text report")
        sys.stdout.write(children.header(profile))
        sys.stdout.write(report.format_report(profile, sort=opts.sort, limit=opts.limit,
                                              title=_title(opts.file, profile.get("meta", {})),
                                              all=opts.all, focus=opts.focus))
        return 0
    out = opts.output or exporters.default_path(opts.file, "html", profile, "")
    counter = exporters.check_counter(profile, opts.counter, f"'{opts.file}'")
    from .exporters import html
    _check_output(out, opts.file, "the profile it reads")
    html.write(profile, out, counter, title=os.path.basename(opts.file))
    print(f"cprof: wrote {out} (HTML report)", file=sys.stderr)
    if opts.open:
        import webbrowser
        if not webbrowser.open("file://" + os.path.abspath(out)):
            print(f"cprof: no web browser found; open {out} yourself", file=sys.stderr)
    return 0


def _export(opts: argparse.Namespace) -> int:
    from . import children, exporters
    profile = children.load(opts.file)   # a --follow-children run's processes, summed
    counter = exporters.check_counter(profile, opts.counter, f"'{opts.file}'")
    out = opts.output or exporters.default_path(opts.file, opts.format, profile, counter)
    _check_output(out, opts.file, "the profile it reads")
    exporters.export(profile, opts.format, out, counter)
    print(f"cprof: wrote {out} ({exporters.describe(opts.format, profile, counter)})", file=sys.stderr)
    return 0


def _compare(opts: argparse.Namespace) -> int:
    if opts.function is not None and opts.fail_above is None:
        raise CprofError("--function names the function that --fail-above checks; add --fail-above PCT")
    if opts.fail_above is not None and not opts.fail_above >= 0:   # NaN too
        raise CprofError(f"--fail-above={opts.fail_above} is not a growth in percent; give 0 or more "
                         "(--fail-above=5 fails when the region grew more than 5%)")
    from . import children, compare
    before, after = children.load(opts.before), children.load(opts.after)  # processes summed
    names = (opts.before, opts.after)
    for profile, name in zip((before, after), names):  # what each sum holds, and what it lacks
        sys.stderr.write(children.summed_note(profile, name))
    counters = compare.common_counters(before, after, opts.counter, names)
    failed, verdict = False, None
    if opts.fail_above is not None:  # checked first: a missing function is one sentence, no table
        failed, verdict = compare.check_growth(before, after, counters[0], opts.fail_above,
                                               opts.function, names)
    sys.stdout.write(compare.format_diff(before, after, counters, names, limit=opts.limit))
    if verdict is not None:
        print(f"cprof: {'FAIL: ' if failed else ''}{verdict}", file=sys.stderr)
    return 1 if failed else 0


def _title(name: str, meta: Mapping[str, Any]) -> str:
    """The report's title: a forked child's profile says whose child it is."""
    if isinstance(meta.get("parent_pid"), int):
        return f"{name} (forked child process {meta.get('pid')} of process {meta['parent_pid']})"
    return name


def _writes_profile_file(path: str | None) -> bool:
    """-o PATH writes the JSON profile (not an export): the run's tree can be made packed."""
    if not path:
        return False
    from . import exporters
    return exporters.format_for_path(path) is None


def _write_output(prof: ProfileData, path: str) -> str:
    """The run's -o: the JSON profile, or the export its name asks for; returns what
    was written, for the 'cprof: wrote' line."""
    from . import exporters, profile_file
    fmt = exporters.format_for_path(path)
    if fmt is None:
        profile_file.write(prof, path)
        return f"{len(prof['functions'])} functions"
    counter = exporters.export(prof, fmt, path)
    return exporters.describe(fmt, prof, counter)


def _check_output(out: str, source: str, what: str) -> None:
    """Before the work: `out` can be written, and is not `source` (an easy slip, such
    as `cprof -o a.py b.py` or `cprof report p.json --html -o p.json`, that would
    destroy the file the run needs or the user wrote)."""
    from . import profile_file
    try:
        same = os.path.samefile(out, source)
    except OSError:
        same = False
    if same:
        raise CprofError(f"-o '{_shown(out)}' is {what}, which it would overwrite; give another file name")
    profile_file.check_writable(out)


def _shown(path: str) -> str:
    """A path as cprof's lines show it: escaped (schema.printable), so that a newline
    or an escape sequence in a file name cannot reach the terminal as one."""
    from .schema import printable
    return printable(path)


def _tell(text: str) -> None:
    """cprof's own lines on stderr at the end of a run: a stderr that cannot take them
    (a full disk, a closed pipe) loses them, never the program's exit code."""
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _save(prof: ProfileData, path: str) -> None:
    """Write the run's profile to `path`; if that fails now (its folder was removed
    during the run, the disk is full), to a new file in the temporary folder, saying
    where.  Never raises: the program's exit code and traceback still follow."""
    try:
        what = _write_output(prof, path)
        _tell(f"cprof: wrote {_shown(path)} ({what})")
        return
    except CprofError as e:
        failed = str(e)
    except Exception as e:  # whatever else writing met (an import the program broke, ...)
        failed = f"cannot write '{_shown(path)}' ({type(e).__name__}: {_shown(str(e))})"
    spare = None
    try:
        from . import profile_file
        spare = profile_file.spare_path(path)
        _write_output(prof, spare)
    except Exception as e:
        if spare is not None:  # the empty file spare_path made
            try:
                os.unlink(spare)
            except OSError:
                pass
        _tell(f"cprof: error: {failed}, and no copy could be written in the temporary folder "
              f"either ({_shown(str(e))}); this run's profile is lost")
    else:
        _tell(f"cprof: error: {failed}; the profile was written to {_shown(spare)} instead")


def _list_counters(pmu: bool = False) -> int:
    try:
        return _print_counters(pmu)
    except BrokenPipeError:  # `cprof --list-counters --pmu | head`: the reader has enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _print_counters(pmu: bool) -> int:
    from . import _cprof
    rows = list_counters(pmu=pmu)
    if pmu and not rows:
        print("libpfm4 detects no PMU on this machine")
        return 0
    if pmu and all(r["pmu"] in ("perf", "perf_raw") for r in rows):
        print("libpfm4 recognises no hardware PMU on this CPU: it knows perf's generic events "
              "only, listed below.\n")
    width = max(len(r["name"]) for r in rows)
    heads = {"built-in": "Built-in counters:",
             "perf software": "perf software events (perf_event_open, per thread):",
             "perf hardware": "perf generic hardware events (one perf group per thread):"}
    kind = None
    for r in rows:
        group = r["pmu"] or r["kind"]
        if group != kind:
            kind = group
            if pmu:
                print(f"PMU '{group}' (libpfm4 names; use them as --counter=NAME, with modifiers "
                      "such as :u):")
            elif group != "built-in":  # the built-in ones come first, as always
                print(f"\n{heads.get(group, group + ':')}")
        state = r["read_path"] if r["available"] else f"UNAVAILABLE: {r['reason']}"
        comp = ("compensated (cprof's own work raises it: its calibrated share is taken out)"
                if r["compensable"] else "not compensated (counts the program's own events)")
        print(f"{r['name']:<{width}}  [{r['unit']}]  {r['description']}\n{'':<{width}}  read by: {state}"
              f"\n{'':<{width}}  {comp}")
    if not pmu:
        info = _cprof.build_info()  # libpfm4 is loaded at run time, where it is installed
        if info["libpfm"]:
            print("\nPMU events by libpfm4 name (INST_RETIRED.ANY_P:u, pmu::EVENT) work too: "
                  "cprof --list-counters --pmu lists the events of the PMUs libpfm4 detects here.")
        else:
            how = ("reinstall cprof without -Dlibpfm=disabled" if "built without" in info["libpfm_why"]
                   else "install libpfm4 (Debian/Ubuntu) or libpfm (Fedora)")
            print(f"\nPMU events by libpfm4 name (INST_RETIRED.ANY_P:u) do not work here: "
                  f"{info['libpfm_why']}; {how} to use them "
                  "(cprof --list-counters --pmu lists them then).")
    return 0


# The malloc-* counters are kept by libcprof_malloc.so, which must be in the process
# from its start: a run that uses them restarts Python with it in LD_PRELOAD.
MALLOC_COUNTERS = tuple(c["name"] for c in builtin_counters() if c["needs_preload"])
_RESTARTED = "CPROF_MALLOC_RESTARTED"      # in the restarted process's environment
_USER_PRELOAD = "CPROF_USER_LD_PRELOAD"    # the LD_PRELOAD the user had, if any
_restarted = False


def _restore_environment() -> None:
    """In the restarted process: give the program the environment the user had, so
    that its own child processes do not inherit the interposer."""
    global _restarted
    if os.environ.pop(_RESTARTED, None) is None:
        return
    _restarted = True
    user = os.environ.pop(_USER_PRELOAD, None)
    if user is None:
        os.environ.pop("LD_PRELOAD", None)
    else:
        os.environ["LD_PRELOAD"] = user


# The restarted process's entry point.  `python -c` puts '' (the current folder) first
# on sys.path unless -I or -P (3.11+) is in effect: it goes before anything is imported
# (sys is built in), and cprof is loaded from the folder that this process ran, not
# looked up.  The profiled program gets its own sys.path[0] later (_set_path0).
_RESTART_CODE = """\
import sys
if not (sys.flags.isolated or getattr(sys.flags, "safe_path", False)):
    del sys.path[0]
import importlib.util, os
pkg = sys.argv.pop(1)
spec = importlib.util.spec_from_file_location("cprof", os.path.join(pkg, "__init__.py"),
                                              submodule_search_locations=[pkg])
mod = importlib.util.module_from_spec(spec)
sys.modules["cprof"] = mod
spec.loader.exec_module(mod)
from cprof.cli import main
sys.exit(main())
"""


def _set_path0(folder: str) -> None:
    """Give the program the sys.path[0] that `python script.py` (its folder) or
    `python -m mod` (the current folder) gives it: in place of cprof's own entry
    (the console script's folder, or the current folder of `python -m cprof`); after
    the malloc restart, which has none, in front; with -I or -P (safe_path), none."""
    if sys.flags.isolated or getattr(sys.flags, "safe_path", False):
        return
    if _restarted:
        sys.path.insert(0, folder)
    else:
        sys.path[0] = folder


def _ensure_malloc_interposer(spec: str, argv: list[str] | None) -> None:
    """Return if the malloc counters in `spec` work in this process; otherwise restart
    the same command with the interposer preloaded (same pid, argv, stdio, and so
    the same exit code), or, when main() was not called as the program's entry
    point (argv given), raise the sentence saying how to start it."""
    wanted = [c for c in spec.split(",") if c in MALLOC_COUNTERS]
    problem = malloc_interposer(wanted[0]) if wanted else None
    if problem is None:
        return
    code, why = problem
    lib = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libcprof_malloc.so")
    if code != errno.ENOPKG:  # loaded, but something else is wrong: the probe's sentence
        raise CprofError(why)
    if _restarted:
        raise CprofError(f"cprof restarted Python with LD_PRELOAD={lib} but the dynamic loader "
                         "did not load it (see its message above, if any; set-user-ID programs "
                         "ignore LD_PRELOAD); fix that, or profile without the malloc counters")
    if not os.path.isfile(lib):
        raise CprofError(f"counter '{wanted[0]}' needs cprof's malloc interposer, and {lib} is "
                         "missing; reinstall cprof")
    if argv is not None or not sys.executable:
        raise CprofError(why)
    if any(c in lib for c in " :"):
        raise CprofError(f"cprof cannot preload {lib}: LD_PRELOAD cannot hold a path with a space "
                         "or ':'; install cprof in a folder without them")
    import subprocess
    env = dict(os.environ)
    user = env.get("LD_PRELOAD")
    # first in line, so that it sees the calls before any other malloc the user preloads
    env["LD_PRELOAD"] = lib + (":" + user if user else "")
    env[_RESTARTED] = "1"
    if user is not None:
        env[_USER_PRELOAD] = user
    # The interpreter's own options (-X, -W, -O ...) too.  Not `-m cprof`: that puts the
    # current folder first on sys.path, and a cprof.py or argparse.py there would run.
    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    cmd = [sys.executable, *flags, "-c", _RESTART_CODE,
           os.path.dirname(os.path.abspath(__file__)), *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)


def _join_threads() -> None:
    # As the interpreter does at exit: wait for non-daemon threads, so their work is profiled.
    # A program that never imported threading started none it would wait for.
    threading = sys.modules.get("threading")
    if threading is None:
        return
    main = threading.main_thread()
    for t in threading.enumerate():
        if t is not main and not t.daemon and t is not threading.current_thread():
            t.join()


def _prepare_script(path: str, args: list[str]):
    if not os.path.exists(path):
        raise CprofError(f"script '{path}' does not exist; check the path")
    if os.path.isdir(path):
        raise CprofError(f"'{path}' is a folder; give a .py script, or a package with -m")
    with open(path, "rb") as f:
        source = f.read()
    if path.endswith(".json") and source.lstrip().startswith(b"{"):
        # a profile named where a script goes (`cprof out.json`): JSON is often valid
        # Python too, and would run until a NameError on null
        raise CprofError(f"'{path}' is a JSON file, not a Python script; to read a profile: "
                         f"cprof report {path}")
    # `python script.py` gives __main__ an absolute __file__ and compiles
    # the code with that name (tracebacks show it); sys.argv[0] stays as typed.
    abspath = os.path.abspath(path)
    try:
        code = compile(source, abspath, "exec")
    except SyntaxError:
        import traceback
        traceback.print_exc(limit=0)
        raise SystemExit(1) from None
    sys.argv = [path] + args
    _set_path0(os.path.dirname(abspath))
    main = type(sys)("__main__")
    main.__dict__.update(__file__=abspath, __builtins__=builtins, __cached__=None, __loader__=None,
                         __package__=None, __spec__=None)
    sys.modules["__main__"] = main

    return exec, (code, main.__dict__)


def _find_spec(name: str):
    """The spec of module `name`, found without importing its packages (their import
    belongs to the profile, as with cProfile -m): each part is looked up in its
    package's folders.  None if it is not there; an import-based lookup when a
    package's folders are not enough to tell (a package that extends its __path__)."""
    import importlib.machinery
    import importlib.util
    parts = name.split(".")
    if not all(parts):
        raise CprofError(f"'{name}' is not a module name; check the name")
    spec = importlib.util.find_spec(parts[0])  # a top-level name: looked up, not imported
    for i in range(1, len(parts)):
        if spec is None:
            return None
        if spec.submodule_search_locations is None:
            raise CprofError(f"'{'.'.join(parts[:i])}' is a module, not a package, so it has no "
                             f"'{parts[i]}'; check the name")
        sub = ".".join(parts[:i + 1])
        found = importlib.machinery.PathFinder.find_spec(sub, list(spec.submodule_search_locations))
        if found is None:
            return importlib.util.find_spec(sub)  # imports the package: rare, and still right
        spec = found
    return spec


def _prepare_module(name: str, args: list[str]):
    import runpy
    _set_path0(os.getcwd())  # before the lookup: python -m finds modules in the current folder
    try:
        spec = _find_spec(name)
    except (ImportError, ValueError) as e:
        raise CprofError(f"cannot find module '{name}' ({e}); check the name and sys.path") from None
    if spec is None:
        raise CprofError(f"no module named '{name}'; check the name and that it is installed")
    if spec.submodule_search_locations is not None:  # a package runs as its __main__, as python -m does
        try:
            main_spec = _find_spec(name + ".__main__")
        except (ImportError, ValueError, CprofError):
            main_spec = None
        if main_spec is None:
            raise CprofError(f"'{name}' is a package with no __main__ module; "
                             f"give a module inside it, or add {name}/__main__.py")
    sys.argv = [name] + args

    # run_module(mod_name, init_globals, run_name, alter_sys), as `python -m` does
    return runpy.run_module, (name, None, "__main__", True)


# Forks of the profiled program (os.fork, multiprocessing's fork): a child that
# returns through cprof writes its own profile beside the parent's, never over it.
_pid_before_fork: int | None = None
_fork_parent: int | None = None   # in a forked child: the pid of the process that forked it
_fork_mask = ForkMask()
_fork_hooks = False


def _before_fork() -> None:
    global _pid_before_fork
    _pid_before_fork = os.getpid()
    # A fork's interpreter clears, as it starts, the signals whose handlers have not run
    # (CPython's _PySignal_AfterFork): a SIGTERM that reaches the child before that
    # trips cprof's handler's flag and is lost, where the default action would end the
    # child (a pool's worker not yet scheduled as Pool.terminate() ends it then waits
    # for its queue forever, and the pool for it).  Blocked in the forking thread, it
    # waits in the kernel until the child has its own handlers (_after_fork_in_child)
    _fork_mask.block(s for s in _ENDING_SIGNALS
                     if _signal_handler is not None and signal.getsignal(s) == _signal_handler)


def _after_fork_in_parent() -> None:
    _fork_mask.restore()


def _after_fork_in_child() -> None:
    global _fork_parent
    _fork_parent = _pid_before_fork
    # A child gets its profile when it ends through cprof (it returns, exits or raises),
    # not when a signal ends it: a pool's workers, ended by SIGTERM, write nothing, as
    # without cprof.
    try:
        for signum in _ENDING_SIGNALS:
            if _signal_handler is not None and signal.getsignal(signum) == _signal_handler:
                signal.signal(signum, signal.SIG_DFL)
    finally:  # a signal sent meanwhile acts now: the default action
        _after_fork_in_parent()


def _forked_from(pid: int) -> int | None:
    """The process this one was forked from, if it is not `pid` (the one that started
    profiling) itself."""
    if os.getpid() == pid:
        return None
    return _fork_parent or os.getppid()  # a fork Python did not see (from C): its parent


# Signals whose default action ends the process quietly: cprof writes the profile and
# then ends the process by the same signal, so its exit status is what it would have
# been.  Only where the program would get the default action (not ignored, not its own
# handler), and a handler the program installs later replaces cprof's.
_ENDING_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))
_signal_handler = None   # cprof's handler while it runs the program


def _in_capture(frame) -> bool:
    """The signal came while cprof's hook ran the repr of a slow call's arguments."""
    from .capture import capture
    while frame is not None:
        if frame.f_code is capture.__code__:
            return True
        frame = frame.f_back
    return False


def _resend(signum: int) -> None:
    while True:  # until the handler, out of the hook, writes the profile and ends the process
        time.sleep(0.01)
        os.kill(os.getpid(), signum)


def _signal_name(signum: int) -> str:
    """SIGTERM for 15 (signal's enums, imported only when a signal ends the run)."""
    import signal as named
    return named.Signals(signum).name


def _children_now() -> set[int]:
    """The pids of this process's children (every thread's), from /proc; empty where
    /proc does not list them."""
    out: set[int] = set()
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                out.update(int(pid) for pid in f.read().split())
    except (OSError, ValueError):
        pass
    return out


def _signal_newborn(before: set[int], signum: int) -> None:
    """Send signum to the children born since `before` was taken (see on_signal)."""
    for pid in _children_now() - before:
        try:
            os.kill(pid, signum)
        except OSError:
            pass


def _die_by(signum: int) -> None:
    try:
        sys.stderr.flush()
    except Exception:
        pass
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # not reached: the default action ends the process at once


def _on_path(path: list[str], fn: Any, *args: Any) -> Any:
    """fn(*args) with `path` as sys.path (cprof's own, from before the program's folder
    joined it), then the program's back: what fn imports cannot be a module of the
    program's (a tempfile.py or gzip.py beside the script).  Only before the program
    runs: no thread of its may import meanwhile."""
    program_path, sys.path = sys.path, path[:]
    try:
        return fn(*args)
    finally:
        sys.path = program_path


def _profile(opts: argparse.Namespace, program: list[str]) -> int:
    global _fork_hooks, _signal_handler
    path_at_start = list(sys.path)  # before the program's folder joins it: what writing imports from
    if opts.output:  # before anything runs: a bad place costs no run
        _check_output(opts.output, "" if opts.module else (program or [""])[0], "the script to profile")
        where = (os.getcwd(), os.path.abspath(opts.output))  # the program may change folder
        from . import profile_file
        try:  # json's C encoder, before the program's folder is on sys.path (0.2 ms)
            profile_file._dumps()
        except Exception:
            pass  # then at the end, where a failure is said and the profile kept if it can be
    # names, plugins, packages' entry points
    prof = Profile(opts.counter, all_call_sites=opts.all_call_sites, compensate=not opts.no_compensate,
                   distributions=opts.distributions, slow_calls=opts.slow_calls,
                   recalibrate=opts.recalibrate, trace=opts.trace, async_mode=opts.async_mode)
    start, stop = prof.switches()  # calibrated now; called from this frame, which runs the program
    if opts.module:
        run, run_args = _prepare_module(opts.module, program)
        target = f"-m {opts.module}"
    elif program:
        run, run_args = _prepare_script(program[0], program[1:])
        target = program[0]
    else:
        raise CprofError("no script to profile; give a script (cprof script.py) or a module (cprof -m mod)")
    # an installed program's own packages are the application (reports, --trace=app):
    # found before the run only for --trace, else at the end (what the program sees
    # imported when it starts stays as it was)
    app_of = {"module": opts.module} if opts.module else {"script": os.path.abspath(program[0])}
    if opts.trace is not None:
        from . import trace
        prof._app = trace.app_folders(**app_of)
    if opts.sort is not None:
        from . import report
        report.sort_key([c for c in prof.counters], opts.sort)  # a bad --sort is refused before running
    if opts.focus is not None:
        from . import focus
        focus.parse_patterns(opts.focus)  # a bad --focus is refused before running

    pid, started = os.getpid(), time.time()
    ending: dict[str, Any] = {"pending": None, "done": False, "retry": False, "children": None}
    windows = None
    if opts.on_signal is not None or opts.window is not None or opts.every or opts.keep:
        from .windows import from_options  # profiling windows (windows.py), not one profile
        # what writing a window imports (windows.preload)
        windows = _on_path(path_at_start, from_options, opts, {"command": [target] + sys.argv[1:]})
    follow = opts.follow_children
    if follow:
        if windows is not None:
            raise CprofError("--follow-children does not go with --on-signal or --window yet; "
                             "profile the children in one run without windows")
        from . import children
    if follow and opts.output:
        from . import profile_file
        if profile_file.beside_path(opts.output, 0) is None:
            raise CprofError(f"--follow-children writes one file per process beside -o's, and "
                             f"'{_shown(opts.output)}' is a device or a stream; give -o a file "
                             "name, or leave -o out for the report of every process")
    if follow and any(c in MALLOC_COUNTERS for c in opts.counter.split(",")):
        raise CprofError("--follow-children does not work with the malloc counters yet (a child "
                         "would need the interposer preloaded); use the pymalloc-* counters, or profile without them")

    def finish(exit_code: int, signum: int | None = None) -> None:
        """Stop profiling and write the profile (-o) or the report (stderr), with the
        sys.path cprof started with (the program may have replaced its own, and writing
        imports from the standard library); the program's is put back for its exit
        handlers.  The swap is _on_path's, inline: profiling is still on here, and a
        call would show in the profile."""
        program_path, sys.path = sys.path, path_at_start[:]
        try:
            ending["done"] = True
            if follow and os.getpid() != pid:  # a forked child: its own fresh profile (children.py)
                children.end(exit_code, signum)
                return
            if windows is not None:  # close the open window, if any, and write it
                windows.stop(exit_code=exit_code, **({} if signum is None else
                                                      {"signal": _signal_name(signum)}))
                if not windows.files and windows.signal is not None and not windows.failed:
                    _tell(f"cprof: no window opened: {windows.signal.name} never came while the "
                          "program ran, so nothing was written")
                return
            hook_error = None
            try:
                stop(strict=False)
            except CprofError as e:
                hook_error = str(e)
            else:
                replaced = prof.replaced_hooks()
                if replaced:
                    more = len(replaced) - 1
                    hook_error = replaced[0] + (f" (and in {more} more threads)" if more else "")
            finally:
                prof._trace_off()
            meta: dict[str, Any] = {"command": [target] + sys.argv[1:], "started": started,
                    "duration_s": round(time.time() - started, 6), "exit_code": exit_code,
                    "pid": os.getpid()}
            parent = _forked_from(pid)
            if parent is not None:
                meta["parent_pid"] = parent
            if signum is not None:
                meta["signal"] = _signal_name(signum)
            if prof._app is None:
                from . import trace
                prof._app = trace.app_folders(**app_of)
            if signum is not None and ending.get("children") is not None:
                # before the followed children are listed: those born since the signal end
                # now, writing their profiles, rather than after the report, missing from it
                _signal_newborn(ending["children"], signum)
            kids = children.finish() if follow else {}  # the children that started profiling
            loaded = kids.pop("_loaded", None)
            meta.update(kids)
            # written or reported once: compact tree, the engines' trees merged in place; a
            # profile file gets the tree packed as it writes it (no int64 columns in between)
            profile = prof._compact_profile(consume=True, packed=_writes_profile_file(opts.output),
                                            **meta)
            if loaded is not None:  # no -o: the children's profiles, summed into the report
                profile = children.merged(profile, loaded)
            if signum is None:  # at a signal, Python would not flush it either
                try:
                    sys.stdout.flush()
                except Exception:
                    pass
            if opts.output:
                try:
                    moved = os.getcwd() != where[0]
                except OSError:  # the current folder was removed
                    moved = True
                out = where[1] if moved else opts.output
                beside: str | None = out
                if parent is not None:  # out.json -> out.<pid>.json: never over the parent's
                    from . import profile_file
                    beside = profile_file.beside_path(out, os.getpid())
                    if beside is None:
                        _tell(f"cprof: note: process {os.getpid()} (a fork) did not write its profile: "
                              f"'{_shown(out)}' is a device or a stream, with no place beside it "
                              "for a second file; give -o a file name to keep every process's profile")
                if beside is not None:
                    _save(profile, beside)
                if follow and not _writes_profile_file(opts.output) and meta.get("children"):
                    _tell(f"cprof: note: each of the {len(meta['children'])} child processes wrote its "
                          "own file beside it in that format, not summed; for one profile of every "
                          "process write JSON (-o NAME.json) and export it (cprof export NAME.json "
                          "--format ...)")
            else:
                from . import report
                _tell("\n" + (children.header(profile) if follow else "")
                      + report.format_report(profile, sort=opts.sort, limit=opts.limit,
                                                  title=_title(target, meta),
                                                  all=opts.all, focus=opts.focus).removesuffix("\n"))
            if hook_error is not None:
                _tell(f"cprof: warning: {hook_error}")
        except OSError as e:  # writing needs a file descriptor or two, and Python's imports too
            if e.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            _tell(f"cprof: error: the profile could not be written: the program left no file "
                  f"descriptor free ({e.strerror}); close files before it ends, or raise the limit "
                  "(ulimit -n)")
        finally:
            sys.path = program_path

    def on_signal(signum, frame):
        if ending["done"]:  # the profile is being written: end once it is
            ending["pending"] = signum
            return
        if windows is not None and windows.after_writing(lambda: on_signal(signum, None)):
            return  # a window is being written: it is kept, then the run ends
        if opts.slow_calls and _in_capture(frame):
            # inside cprof's hook (a slow call's argument repr, output redirected): stopping
            # there would leave that call half-counted; the signal comes again every 10 ms
            if not ending["retry"]:
                ending["retry"] = True
                import threading
                threading.Thread(target=_resend, args=(signum,), daemon=True).start()
            return
        # Without cprof the signal would have ended the process at once; while the
        # profile is written, the program's other threads run on, and a pool's thread
        # replaces the workers the same signal ended (to the process group): children
        # born meanwhile would outlive the run, waiting for work forever.  They get the
        # signal too, as they would have had they existed when it came
        ending["children"] = _children_now()
        finish(-signum, signum)
        _signal_newborn(ending["children"], signum)
        _die_by(signum)

    ours = []
    _signal_handler = on_signal
    for signum in _ENDING_SIGNALS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            try:
                signal.signal(signum, on_signal)
            except ValueError:  # not the main thread (main() called from another): none
                break
            ours.append(signum)
    if not _fork_hooks:
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                            after_in_child=_after_fork_in_child)
        _fork_hooks = True
    if follow:  # after the hook above: a forked child's own signal handlers come last
        _on_path(path_at_start, children.start, prof, where[1] if opts.output else None, opts.counter,
                 {"all_call_sites": opts.all_call_sites, "compensate": not opts.no_compensate,
                  "distributions": opts.distributions, "slow_calls": opts.slow_calls})

    exit_code = 0
    exc: BaseException | None = None
    if windows is not None:
        windows.start()  # the program runs unprofiled until a window opens
    else:
        prof._trace_on()
        start(push_existing=False)  # cprof's own frames are not the program's
    try:
        run(*run_args)
        _join_threads()
    except SystemExit as e:
        _join_threads()
        exc = e
        code = e.code
        exit_code = code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException as e:  # the program's own exception: reported below, as Python would
        exc = e
        exit_code = 1
        _join_threads()  # the interpreter waits for non-daemon threads after an uncaught exception too
    finally:
        ending["done"] = True  # from here a signal waits until the profile is written
    finish(exit_code)
    for signum in ours:
        if signal.getsignal(signum) == on_signal:  # the program's own handler stays
            signal.signal(signum, signal.SIG_DFL)
    if ending["pending"] is not None:
        _die_by(ending["pending"])
    if isinstance(exc, SystemExit):
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        return exit_code
    if exc is not None:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next  # hide cprof's own frames, as `python script.py` shows none
        exc.__traceback__ = tb  # the default hook prints the exception's own traceback
        try:  # the program's sys.excepthook, if it set one, as Python would
            sys.excepthook(type(exc), exc, tb)
        except BaseException:
            import traceback
            traceback.print_exception(type(exc), exc, tb)
        if isinstance(exc, KeyboardInterrupt):
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        return 1
    return exit_code


def main(argv: list[str] | None = None) -> int:
    entry, argv = argv, sys.argv[1:] if argv is None else argv
    _restore_environment()
    try:
        if argv[:1] and argv[0] in _COMMANDS:  # only first: `cprof -c cpu report` runs ./report
            command = _commands(_parser())[argv[0]]
            command._fill()  # type: ignore[attr-defined]
            opts = command.parse_args(argv[1:])
            try:
                status = int(opts.run(opts))
                sys.stdout.flush()
            except OSError as e:  # `cprof report p.json > /dev/full`, a reader gone
                if e.filename:
                    raise
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # exit quietly
                if isinstance(e, BrokenPipeError):
                    return 1
                raise CprofError(f"could not write the output ({e.strerror})") from None
            return status
        run = _parse_run(argv)
        if run is None:
            parser = _parser()
            head, program = _split_run_args(parser, argv)
            opts = parser.parse_args(head)
        else:
            opts, program = run
        if opts.pmu and not opts.list_counters:
            raise CprofError("--pmu goes with --list-counters; use cprof --list-counters --pmu")
        if opts.list_counters:
            return _list_counters(opts.pmu)
        _ensure_malloc_interposer(opts.counter, entry)
        return _profile(opts, program)
    except CprofError as e:
        print(f"cprof: error: {e}", file=sys.stderr)
        return EXIT_USAGE
