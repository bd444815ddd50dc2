"""``traceroot-run``: run any program so that every Python process it starts is traced.

The launcher only prepares the environment: it puts the folder holding
traceroot's ``sitecustomize`` first on ``PYTHONPATH`` and replaces itself with
the program (same PID, signals and exit code). Each Python process that
inherits that environment then initializes tracing at start-up.

The common case, ``traceroot-run PROGRAM [ARGS]...``, runs without loading click (or
anything else the launcher does not need): every option, ``--help`` and ``--check`` go
through the click command, `main`, made on first use.
"""

from __future__ import annotations

import os
import sys

from traceroot._settings import (
    CHECKED_VARIABLE,
    PROGRAM_NAME_VARIABLE,
    SETTINGS,
    WATCH_VARIABLE,
    tracing_disabled,
)
from traceroot.version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, MutableMapping, Sequence
    from pathlib import Path
    from typing import Any, NoReturn

PROG = "traceroot-run"
# Where sitecustomize.py lives; the only thing this folder contributes to sys.path.
HOOK_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "sitecustomize"
)
# Tells the program's processes which interpreter traceroot-run runs on, for the
# warning when theirs cannot import traceroot.
LAUNCHER_PYTHON_VAR = "TRACEROOT_LAUNCHER_PYTHON"

EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127

# Python flags that keep sitecustomize from running: -S skips site, -E ignores
# PYTHONPATH, -I implies -E.
_SITE_BLOCKING = "IES"


def _is_python_name(name: str) -> bool:
    """Whether a program's file name is a Python interpreter's: python, python3.12, pythont..."""
    if name.endswith(".exe"):
        name = name[:-4]
    if not name.startswith("python"):
        return False
    rest = name[len("python") :]
    if rest and rest[-1].isalpha() and rest[-1].islower():
        rest = rest[:-1]  # python3.13t, python3.11d
    return all(c.isdigit() or c == "." for c in rest)


def _integrations_value(_ctx: object, _param: object, value: str | None) -> str | None:
    import click

    if value is None:
        return None
    text = value.strip().lower()
    if text in ("all", "none"):
        return text
    names = [n.strip().replace("-", "_") for n in text.split(",") if n.strip()]
    # Imported only here: the launcher should start fast when the option is not used.
    from traceroot._integrations import Integration

    valid = {member.value for member in Integration}
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown integration(s) {', '.join(unknown) or repr(value)}; "
            f"use all, none or a comma-separated list of: {', '.join(sorted(valid))}",
            param_hint="--integrations",
        )
    return ",".join(dict.fromkeys(names))


def with_hook_on_pythonpath(pythonpath: str | None, hook_dir: str = HOOK_DIR) -> str:
    """``PYTHONPATH`` with ``hook_dir`` first and listed once; the rest kept as it was.

    An unset or empty ``PYTHONPATH`` gives just ``hook_dir``: a stray separator
    would put the current directory on the program's ``sys.path``.
    """
    kept = without_hook(pythonpath, hook_dir)
    return os.pathsep.join([hook_dir, kept]) if kept else hook_dir


def without_hook(pythonpath: str | None, hook_dir: str = HOOK_DIR) -> str:
    """``PYTHONPATH`` without ``hook_dir``; the rest kept as it was."""
    target = os.path.normcase(os.path.realpath(hook_dir))
    entries = pythonpath.split(os.pathsep) if pythonpath else []
    kept = [e for e in entries if not (e and os.path.normcase(os.path.realpath(e)) == target)]
    return os.pathsep.join(kept)


class LaunchError(Exception):
    """The program cannot be started; ``code`` is the shell's exit status for it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def resolve_program(program: str, path: str | None) -> str:
    """The file ``program`` names, found on ``path`` as ``execvp`` does; else LaunchError."""
    import stat

    if os.sep in program or (os.altsep and os.altsep in program):
        candidates = [program]
    else:
        if not program:
            raise LaunchError(EXIT_NOT_FOUND, f"{PROG}: '': command not found")
        dirs = (path if path is not None else os.defpath).split(os.pathsep)
        candidates = [os.path.join(d or os.curdir, program) for d in dirs]
    unusable: str | None = None
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(candidate, os.X_OK):
            return candidate
        unusable = unusable or candidate
    if unusable is not None:
        reason = "Is a directory" if os.path.isdir(unusable) else "Permission denied"
        raise LaunchError(EXIT_CANNOT_EXECUTE, f"{PROG}: {program}: {reason}")
    if candidates == [program]:
        raise LaunchError(EXIT_NOT_FOUND, f"{PROG}: {program}: No such file or directory")
    raise LaunchError(EXIT_NOT_FOUND, f"{PROG}: {program}: command not found")


def _python_command_line(executable: str, args: Sequence[str]) -> list[str] | None:
    """The interpreter options in effect when ``executable args`` runs Python, else None."""
    if _is_python_name(os.path.basename(executable)):
        return list(args)
    try:
        with open(executable, "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")][:1] + [
            w for w in words[2:] if w.startswith("-")
        ]
    if not words or not _is_python_name(os.path.basename(words[0])):
        return None
    return words[1:]


def site_blocking_flag(args: Sequence[str]) -> str | None:
    """The first of -I / -E / -S among Python's own options in ``args``, if any."""
    words = iter(args)
    for arg in words:
        if arg in ("-", "--") or not arg.startswith("-"):
            return None  # the script (or stdin) starts here
        if arg.startswith("--"):
            if arg == "--check-hash-based-pycs":
                next(words, None)
            continue
        for index, flag in enumerate(arg[1:], start=2):
            if flag in _SITE_BLOCKING:
                return f"-{flag}"
            if flag in "cm":
                return None  # the rest belongs to the command or module
            if flag in "WX":
                if index == len(arg):
                    next(words, None)  # -W VALUE: skip VALUE
                break
    return None


def program_name(program: str, args: Sequence[str]) -> str | None:
    """The service name ``program args`` goes by: the script or module a Python command
    runs (None for ``-c`` or stdin), else the program's own name."""
    name = os.path.basename(program)
    if _is_python_name(name):
        script = _python_target(args)
        if script is None or script.startswith("-m"):
            return script[2:] if script else None
        name = os.path.basename(script)
        if name == "__main__.py":
            name = os.path.basename(os.path.dirname(script)) or name
    return name.removesuffix(".py") or None


def _python_target(args: Sequence[str]) -> str | None:
    """The script path a Python command line runs, ``-mMODULE``, or None (``-c``, stdin)."""
    words = iter(args)
    for arg in words:
        if arg == "--":
            return next(words, None)
        if arg == "-" or not arg.startswith("-"):
            return None if arg == "-" else arg
        if arg.startswith("--"):
            if arg == "--check-hash-based-pycs":
                next(words, None)
            continue
        for index, flag in enumerate(arg[1:], start=2):
            if flag == "c":
                return None
            if flag == "m":
                module = arg[index:] or next(words, "")
                return "-m" + module if module else None
            if flag in "WX":
                if index == len(arg):
                    next(words, None)  # -W VALUE: skip VALUE
                break
    return None


def prepare_environment(
    env: MutableMapping[str, str], program: str | None = None, args: Sequence[str] = ()
) -> None:
    """Make every Python process started with ``env`` run traceroot's sitecustomize.

    With tracing disabled the hook is left off the path (and taken off an inherited one),
    so the program's processes do not even import traceroot.
    """
    if tracing_disabled(env):
        kept = without_hook(env.get("PYTHONPATH"))
        if kept:
            env["PYTHONPATH"] = kept
        else:
            env.pop("PYTHONPATH", None)
        return
    env["PYTHONPATH"] = with_hook_on_pythonpath(env.get("PYTHONPATH"))
    env[LAUNCHER_PYTHON_VAR] = sys.executable
    name = program_name(program, args) if program is not None else None
    if name:
        env[PROGRAM_NAME_VARIABLE] = name
    else:
        env.pop(PROGRAM_NAME_VARIABLE, None)  # an outer launch's name is not this program's
    # Worked out once here rather than in each of the program's processes: the
    # configuration is checked (its warnings shown now, not by every process) and the
    # modules whose import starts tracing are found.
    from traceroot._client import launcher_variables

    for variable in (CHECKED_VARIABLE, WATCH_VARIABLE):
        env.pop(variable, None)  # an outer launch's findings are not this program's
    env.update(launcher_variables(env))


def _notice(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def exec_program(program: str, args: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process with ``program``; exit 126/127 with one line if impossible."""
    import errno

    try:
        executable = resolve_program(program, env.get("PATH"))
    except LaunchError as exc:
        _notice(str(exc))
        sys.exit(exc.code)
    options = _python_command_line(executable, args)
    flag = site_blocking_flag(options) if options is not None else None
    if flag is not None:
        _notice(
            f"{PROG}: warning: python {flag} skips the start-up hook, so this program runs "
            f"untraced; drop {flag} or call traceroot.initialize() in the program."
        )
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(executable, [program, *args], env)
    except OSError as exc:
        code = EXIT_NOT_FOUND if exc.errno == errno.ENOENT else EXIT_CANNOT_EXECUTE
        detail = exc.strerror or str(exc)
        if exc.errno == errno.ENOENT:
            detail += " (is the interpreter on its #! line installed?)"
        _notice(f"{PROG}: {program}: {detail}")
        sys.exit(code)


def _read_env_file(env: dict[str, str], env_file: Path | None) -> None:
    """Read ``env_file``, or ``./.env`` when there is one, into ``env`` (never overriding)."""
    path = str(env_file) if env_file is not None else ".env"
    if env_file is None and not os.path.isfile(path):
        return
    # python-dotenv loads only when there is a file to read: start-up stays fast.
    from pathlib import Path

    from traceroot.cli._envfile import EnvFileError, load_env_file

    try:
        for problem in load_env_file(Path(path), env):
            _notice(f"{PROG}: warning: {problem}")
    except EnvFileError as exc:
        _notice(f"{PROG}: warning: {exc}; continuing without it")


def run(argv: Sequence[str] | None = None) -> None:
    """The ``traceroot-run`` command: ``PROGRAM [ARGS]...`` at once, anything else by `main`."""
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or words[0].startswith("-"):
        __getattr__("main")(words, prog_name=PROG)
        return
    program, args = words[0], words[1:]
    env = dict(os.environ)
    _read_env_file(env, None)
    prepare_environment(env, program, args)
    exec_program(program, args, env)


def _version_message() -> str:
    return f"{PROG} {__version__} (Python {sys.version.split()[0]}, {sys.executable})"


EPILOG = f"""\b
Examples:
  {PROG} python app.py
  {PROG} --environment production uvicorn app:app --port 8000
  {PROG} gunicorn -w 4 app:app
  {PROG} --check

\b
Every option sets the variable it names in the program's environment; without
the option the variable is passed on as it is. A .env file in the current
directory is read first (like `flask run`), never overriding variables already
set. Everything after PROGRAM, or after `--`, goes to the program.
"""


def _setting_options(func: Callable[..., None]) -> Callable[..., None]:
    """One option per setting that has one in the settings table, each setting its variable."""
    import click

    for setting in reversed(SETTINGS):
        if setting.option is None:
            continue
        variable = setting.variable
        if setting.option == "--disabled":
            func = click.option(
                "--disabled",
                is_flag=True,
                default=None,
                flag_value="false",
                help="Run the program untraced; traceroot is not even imported. "
                f"Sets {variable}=false.",
            )(func)
        elif setting.kind == "bool":
            func = click.option(
                setting.option,
                setting.field,
                default=None,
                help=f"{setting.help}. Sets {variable}.",
            )(func)
        else:
            func = click.option(
                setting.option,
                setting.field,
                metavar=_METAVARS.get(setting.kind, "NAME"),
                callback=_integrations_value if setting.field == "integrations" else None,
                help=f"{_first_sentence(setting.help)}. Sets {variable}.",
            )(func)
    return func


_METAVARS = {"secret": "KEY", "url": "URL", "list": "LIST"}


def _first_sentence(text: str) -> str:
    return text.split(";")[0].replace("`", "")


def _option_variables(options: Mapping[str, object]) -> dict[str, str]:
    """The variables the given options set."""
    values: dict[str, str] = {}
    for setting in SETTINGS:
        key = "disabled" if setting.option == "--disabled" else setting.field
        value = options.get(key)
        if value is None:
            continue
        values[setting.variable] = str(value).lower() if isinstance(value, bool) else str(value)
    return values


_made: list[Any] = []


def __getattr__(name: str) -> Any:
    # The click command, made (and click imported) only when an option is given.
    if name != "main":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not _made:
        _made.append(_command())
    return _made[0]


def _command() -> Any:
    """The click command behind every option, `--help` and `--check`."""
    from pathlib import Path

    import click

    @click.command(
        name=PROG,
        epilog=EPILOG,
        context_settings={"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]},
    )
    @_setting_options
    @click.option(
        "--env-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        metavar="PATH",
        help="Read variables from PATH instead of ./.env.",
    )
    @click.option("--no-env-file", is_flag=True, help="Do not read any .env file.")
    @click.option(
        "--check",
        is_flag=True,
        help="Print the resolved configuration, the integrations and the versions, send one "
        "test span, and exit 0 only when all is well.",
    )
    @click.version_option(__version__, message=_version_message())
    @click.argument("program", required=False)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def main(
        env_file: Path | None,
        no_env_file: bool,
        check: bool,
        program: str | None,
        args: tuple[str, ...],
        **options: object,
    ) -> None:
        """Run PROGRAM [ARGS]... with tracing in every Python process it starts.

        PROGRAM is any command on PATH: python, uvicorn, gunicorn, celery, flask,
        pytest... No change to its code is needed.
        """
        if env_file is not None and no_env_file:
            raise click.UsageError("--env-file and --no-env-file contradict each other.")
        if program is None and not check:
            raise click.UsageError("Missing PROGRAM: the command to run, e.g. python app.py.")
        env = dict(os.environ)
        if not no_env_file:
            _read_env_file(env, env_file)
        env.update(_option_variables(options))
        if check:
            from traceroot.cli._check import run_check

            sys.exit(run_check(env))
        assert program is not None
        prepare_environment(env, program, args)
        exec_program(program, args, env)

    return main


if __name__ == "__main__":
    run()
