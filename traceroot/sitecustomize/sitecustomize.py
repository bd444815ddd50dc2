"""traceroot's start-up hook, imported by Python in every process that has
this folder on ``PYTHONPATH`` (``traceroot-run`` puts it there).

It prepares tracing from the ``TRACEROOT_*`` variables (the launcher leaves
it off the path when tracing is disabled): the configuration and the import hooks
only, the SDK loading with the first span or instrumented import; then it runs the
user's own ``sitecustomize`` from further down ``sys.path``, so that one is
not shadowed. It must never break the program: a failure is one warning on
stderr and the program runs untraced.

The folder deliberately holds nothing but this file and is not a package:
everything in it becomes importable as a top-level module of the program.
The file may run under any interpreter the program uses, not only the one
traceroot is installed in, so it sticks to syntax every Python 3 accepts.
"""

import os
import sys

_LAUNCHER_MODULES = ("traceroot.cli", "traceroot.cli.main")


def _warn(message: str) -> None:
    import logging

    logging.getLogger("traceroot").warning("traceroot: %s", message)


def _is_launcher() -> bool:
    # traceroot-run started through traceroot-run (or with our folder already
    # on PYTHONPATH) is about to exec the program, which initializes itself.
    argv = getattr(sys, "argv", None) or [""]
    if os.path.basename(argv[0]).split(".")[0] == "traceroot-run":
        return True
    orig = list(getattr(sys, "orig_argv", None) or [])
    for index, arg in enumerate(orig):
        if arg == "-m" and index + 1 < len(orig):
            return orig[index + 1] in _LAUNCHER_MODULES
        if arg.startswith("-m"):
            return arg[2:] in _LAUNCHER_MODULES
    return False


def _initialize() -> None:
    try:
        import traceroot
    except Exception as exc:
        launcher = os.environ.get("TRACEROOT_LAUNCHER_PYTHON")
        where = f"traceroot-run runs on {launcher}; " if launcher else ""
        _warn(
            f"this program runs on {sys.executable} (Python {sys.version.split()[0]}), "
            f"which cannot import traceroot ({type(exc).__name__}: {exc}); {where}"
            f"the program runs untraced. Install traceroot for {sys.executable} or start "
            "the program with the Python traceroot is installed in."
        )
        return
    auto_initialize = getattr(traceroot, "auto_initialize", None)
    if auto_initialize is None:
        _warn(
            f"the traceroot imported from {getattr(traceroot, '__file__', '?')} has no "
            f"auto_initialize(); the program runs untraced. Upgrade traceroot for {sys.executable}."
        )
        return
    try:
        # Deferred: only the configuration and the import hooks now; the SDK loads with the
        # first span. An older traceroot (another interpreter's) starts everything at once.
        if "deferred" in (getattr(auto_initialize, "__kwdefaults__", None) or {}):
            auto_initialize(deferred=True)
        else:
            auto_initialize()
    except Exception as exc:  # auto_initialize() should never raise; be sure anyway
        _warn(f"tracing could not start ({type(exc).__name__}: {exc}); the program runs untraced.")


def _path_finder():  # type: ignore[no-untyped-def]
    # The import system's own path finder, from sys.meta_path: importing importlib.machinery
    # would load `importlib` (and `warnings`) in every process.
    for finder in sys.meta_path:
        if getattr(finder, "__name__", None) == "PathFinder" and hasattr(finder, "find_spec"):
            return finder
    import importlib.machinery

    return importlib.machinery.PathFinder


def _run_user_sitecustomize() -> None:
    """Import the ``sitecustomize`` Python would have imported without us."""
    here = os.path.normcase(os.path.realpath(os.path.dirname(os.path.abspath(__file__))))

    def is_ours(entry: str) -> bool:
        return bool(entry) and os.path.normcase(os.path.realpath(entry)) == here

    try:
        ours = [i for i, entry in enumerate(sys.path) if is_ours(entry)]
        rest = [e for e in sys.path[ours[0] + 1 :] if not is_ours(e)] if ours else []
        spec = _path_finder().find_spec("sitecustomize", rest)
    except Exception as exc:
        _warn(
            f"could not look for your own sitecustomize ({type(exc).__name__}: {exc}); "
            "it was not run."
        )
        return
    if spec is None or spec.loader is None:
        return
    import importlib.util

    this = sys.modules.get("sitecustomize")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        # Their error is reported by site.py exactly as it would be without us.
        if this is not None:
            sys.modules["sitecustomize"] = this
        raise


# TRACEROOT_ENABLED is read by traceroot itself (one parser for the whole package): with
# tracing disabled, traceroot-run leaves this folder off PYTHONPATH, so we never run.
if not _is_launcher():
    _initialize()
_run_user_sitecustomize()
