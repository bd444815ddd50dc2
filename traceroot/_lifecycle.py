"""Getting spans out before a process ends: normal exit, multiprocessing children and pool
workers, SIGTERM.

Exit is bounded once: every wait for the backend made while the process is exiting (the
flush on SIGTERM, the shutdown at exit or when a multiprocessing child ends) draws on one
allowance, `exit_allowance`, of TRACEROOT_SHUTDOWN_TIMEOUT seconds in all.

A pool worker (`multiprocessing.Pool`) is ended by SIGTERM when the pool is terminated,
which `with Pool(...)` does on leaving the block: while a worker waits for its next task
(its tasks' spans may still be queued), SIGTERM delivers them before the worker dies by the
signal, as it would have; while it runs a task, SIGTERM keeps its default, immediate effect.

The start-up hook of every traced process sets all this up, so at import this module loads
nothing Python has not loaded already: not `threading`, `logging`, `weakref`, `mmap`, nor
`signal` itself (its enums load `enum`; `_compat.signal_module()` gives the functions).
"""

from __future__ import annotations

import atexit
import os
import sys

from traceroot import _compat as compat
from traceroot import _import_hooks as import_hooks
from traceroot import _propagation as propagation

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    import mmap
    import threading
    import weakref
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

    Handler = Callable[[int, FrameType | None], Any] | int | None


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("traceroot")


_signals = compat.signal_module()
SIGTERM: int = _signals.SIGTERM
SIG_DFL: Any = _signals.SIG_DFL
SIG_IGN: Any = _signals.SIG_IGN
# The functions themselves: SigtermFlush replaces the `signal` module's attributes (once it
# is imported) and these follow the module's own, which give enums as without us.
_real_signal: Callable[..., Any] = _signals.signal
_real_getsignal: Callable[[int], Any] = _signals.getsignal
_WRAPPED = "__traceroot_wrapped__"
# How much longer than the allowance a SIGTERM waits for the shutdown it started in a thread
# (which could be stuck behind a lock the interrupted code holds).
_GRACE = 0.5
_POSTPONE = 0.002  # seconds before a signal caught in our own code is sent again
_MAX_POSTPONED = 100  # then handled where it is: 0.2 s at most, and the exit stays bounded
_OBSERVE = "traceroot._observe"
_WAIT_SLICE = 0.1  # seconds an idle pool worker waits for a task before running Python again


class ExitAllowance:
    """How long, in total, traceroot may delay the end of this process.

    `limit` is TRACEROOT_SHUTDOWN_TIMEOUT (set by the pipeline). Once the process is
    exiting, flushes and shutdowns wait at most `left()` and `charge()` what they waited.

    Pool workers also share one account, in memory every forked worker sees, of the time
    their exits spent waiting in vain: recycled workers (`maxtasksperchild`) would
    otherwise each wait the whole timeout for a backend that does not answer. A worker's
    flush that succeeds clears it.
    """

    def __init__(self) -> None:
        self.limit = 5.0
        self.exiting = False
        self.pool_worker = False
        self._spent = 0.0
        # time.monotonic() when the last wait ended with every span delivered; None when
        # the last one did not (or none ended yet).
        self._settled_at: float | None = None
        self._wasted_by_workers: mmap.mmap | None = None

    def share_with_workers(self) -> None:
        """Called in the parent before any worker forks (before every fork)."""
        if self._wasted_by_workers is None:
            import mmap

            try:
                self._wasted_by_workers = mmap.mmap(-1, 8)  # anonymous, shared with children
            except (OSError, ValueError):  # no shared memory: each worker has its own limit
                pass

    def begin(self) -> None:
        """The process is most likely ending: its exit, or a SIGTERM it handles.

        A program still running longer than the allowance after its last wait, which
        delivered everything, was not ending then (it handled that SIGTERM and went on):
        this ending gets the whole allowance again. Otherwise a program that handles
        SIGTERM again and again, with a slow backend, would use the allowance up, and its
        real exit would wait for nothing. After a wait that failed, the account stands:
        a backend that does not answer is waited for once per process.
        """
        import time  # built in: loaded only on the way out

        settled = self._settled_at
        if self.exiting and settled is not None and time.monotonic() - settled > self.limit:
            self._spent = 0.0
        self.exiting = True

    def left(self) -> float:
        left = self.limit - self._spent
        if self.pool_worker and self._wasted_by_workers is not None:
            left = min(left, self.limit - _read_seconds(self._wasted_by_workers))
        return max(0.0, left)

    def charge(self, seconds: float, delivered: bool = True) -> None:
        if not self.exiting:
            return
        seconds = max(0.0, seconds)
        self._spent += seconds
        import time

        self._settled_at = time.monotonic() if delivered else None
        shared = self._wasted_by_workers
        if self.pool_worker and shared is not None:
            # Not atomic across workers: concurrent exits may each wait; sequential ones
            # (what recycling does) see each other's waste.
            _write_seconds(shared, 0.0 if delivered else _read_seconds(shared) + seconds)

    def reset(self) -> None:
        """A new process (a fork's child) starts with the whole allowance."""
        self.exiting = False
        self.pool_worker = False
        self._spent = 0.0
        self._settled_at = None


def _read_seconds(memory: mmap.mmap) -> float:
    import struct

    return float(struct.unpack_from("d", memory)[0])


def _write_seconds(memory: mmap.mmap, value: float) -> None:
    import struct

    struct.pack_into("d", memory, 0, value)


exit_allowance = ExitAllowance()


class _ExitState:
    """The shutdown callbacks and whether one is running (a SIGTERM then waits for it)."""

    def __init__(self) -> None:
        self.shutdowns: list[Callable[[], None]] = []
        self.running = False
        self.deferred_signal: int | None = None
        self.postponed = 0  # times in a row a signal was caught in our code and sent again
        self.hooked = False


_state = _ExitState()


# The signal mask of the forking thread while it forks (see _hold_sigterm_over_fork).
_mask_over_fork: set[int] | None = None


def _hold_sigterm_over_fork() -> None:
    """Block SIGTERM in the forking thread until the fork is done, when Python handles it.

    A child forked while a Python SIGTERM handler is installed inherits that handler, and
    CPython forgets any signal that arrives before it has reset its signal state in the
    child. A pool's terminate() signalling a worker it has just forked could so be lost,
    and the worker would wait for ever. Blocked, the signal stays pending in the kernel and
    arrives once the child unblocks it (after_in_child runs after that reset).
    """
    global _mask_over_fork
    if _state.hooked:
        exit_allowance.share_with_workers()
    signals = compat.signal_module()
    mask = getattr(signals, "pthread_sigmask", None)
    if mask is None or not callable(_real_getsignal(SIGTERM)):
        return
    try:
        _mask_over_fork = mask(signals.SIG_BLOCK, {SIGTERM})
    except (OSError, ValueError):
        _mask_over_fork = None


def _release_sigterm_after_fork() -> None:
    global _mask_over_fork
    previous, _mask_over_fork = _mask_over_fork, None
    if previous is not None:
        signals = compat.signal_module()
        signals.pthread_sigmask(signals.SIG_SETMASK, previous)


def _after_fork_in_child() -> None:
    exit_allowance.reset()
    _state.running = False
    _state.deferred_signal = None
    _state.postponed = 0
    _register_mp_finalizer()
    _release_sigterm_after_fork()  # last: a pending SIGTERM now finds our state reset


def on_exit(shutdown: Callable[[], None]) -> None:
    """Run `shutdown` at interpreter exit, when a multiprocessing child finishes, and before
    a default SIGTERM ends the process; make pool workers deliver their spans (and carry the
    submitting span with each task).

    multiprocessing ends its forked children with `os._exit`, which skips atexit, but it
    runs its own finalizers first: we register one in each such child.
    """
    _state.shutdowns.append(shutdown)
    if _state.hooked:
        return
    _state.hooked = True
    atexit.register(run_exit_shutdown)
    # The account pool workers share is made before the first fork (_hold_sigterm_over_fork).
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_hold_sigterm_over_fork,
            after_in_parent=_release_sigterm_after_fork,
            after_in_child=_after_fork_in_child,
        )
    mp_process = sys.modules.get("multiprocessing.process")
    if mp_process is not None and mp_process.parent_process() is not None:
        # Started inside a child already running (tracing began in a pool worker): no fork
        # hook will register its finalizer, so register it now.
        _register_now()
    import_hooks.when_imported("multiprocessing.pool", _guarded(_patch_pool_worker))
    import_hooks.when_imported("billiard.pool", _guarded(_patch_billiard_worker))
    propagation.carry_context_into_pools()


def run_exit_shutdown() -> None:
    """Run the shutdown callbacks once the process is ending; never raises.

    A SIGTERM arriving meanwhile is held until they finish, then ends the process as it
    would have (a pool's `terminate()` no longer cuts a worker's last flush short).
    """
    exit_allowance.begin()
    if _state.running:
        return
    _state.running = True
    interrupted = compat.died_of_keyboard_interrupt()
    try:
        for shutdown in list(_state.shutdowns):
            try:
                shutdown()
            except Exception as exc:
                _logger().debug("traceroot: shutdown at exit failed: %r", exc)
    except KeyboardInterrupt:  # a second Ctrl-C while the exit waits: stop waiting
        _logger().warning(
            "traceroot: the exit was interrupted (Ctrl-C) while spans were being sent; "
            "those not sent yet are lost."
        )
    finally:
        _state.running = False
        if interrupted:  # what the shutdown imported must not change the exit status
            compat.keep_interrupted_exit_status()
    # Only the main thread may touch signal handlers; a shutdown run for a SIGTERM in a
    # thread leaves the dying to the handler that started it.
    if _state.deferred_signal is not None and _on_main_thread():
        signum, _state.deferred_signal = _state.deferred_signal, None
        _die_by(signum)


def _exit_by_signal(signum: int) -> None:
    """The process ends by `signum` with its default action: deliver, report, then die.

    The shutdown runs in a thread, joined for at most the allowance: the code the signal
    interrupted may hold a lock the shutdown needs, and the exit must stay bounded.
    """
    exit_allowance.begin()
    if _state.running:  # our shutdown is what the signal interrupted: let it finish first
        _state.deferred_signal = signum
        return
    _run_in_thread(run_exit_shutdown, "traceroot-exit")
    _die_by(signum)


def _postponed(signum: int, frame: FrameType | None) -> bool:
    """Whether the signal, caught in traceroot's own code, is sent again in a moment.

    Python runs a handler between two steps of the code it interrupts: ours perhaps
    queuing a span inside a lock that the flush needs. Sent again a few milliseconds later
    it finds the program's code (our critical sections take microseconds); a program that
    spends nearly all its time in ours is handled where it is after a few tries.
    """
    if _state.running or _state.postponed >= _MAX_POSTPONED:
        _state.postponed = 0
        return False
    if not _interrupted_inside_traceroot(frame):
        _state.postponed = 0
        return False
    import threading
    import time

    def send_again() -> None:
        time.sleep(_POSTPONE)
        _signal_main_thread(signum)

    try:
        start_thread(threading.Thread(target=send_again, name="traceroot-signal", daemon=True))
    except RuntimeError:  # no new threads at interpreter shutdown
        return False
    _state.postponed += 1
    return True


def _run_in_thread(work: Callable[[], None], name: str) -> None:
    """Run a signal handler's `work` in a thread of ours, waited for at most the exit
    allowance (and a little grace).

    The handler runs on the main thread between two steps of whatever it interrupted,
    perhaps inside a lock: the same work run there would wait on that lock for ever. In a
    thread it waits at most as long as the allowance; the program then goes on, releases
    the lock, and the work finishes (or the exit delivers what it could not).
    """
    import threading

    try:
        worker = threading.Thread(target=work, name=name, daemon=True)
        start_thread(worker)
    except RuntimeError:  # no new threads at interpreter shutdown
        work()
    else:
        worker.join(exit_allowance.left() + _GRACE)


def _interrupted_inside_traceroot(frame: FrameType | None) -> bool:
    """Whether a signal interrupted the main thread inside traceroot's code, which may hold
    one of its locks: anywhere in the stack, with a library's or our own handler's frames
    above (the innermost of ours decides). The wrapper `@observe` puts around a function
    holds none while it runs."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("traceroot.") and module != _OBSERVE:
            # An idle pool worker waits in our code for its next task, holding only the
            # task queue's lock: its SIGTERM (Pool.terminate) is handled at once.
            return frame.f_code not in _waits_holding_none_of_ours()
        frame = frame.f_back
    return False


def _waits_holding_none_of_ours() -> tuple[object, ...]:
    return (compat.simple_queue_get.__code__, _Inbox.get.__code__)


def _signal_main_thread(signum: int) -> None:
    """Send `signum` to the main thread, which runs Python's handlers: sent to the process,
    it could reach another thread and leave the main one waiting in a blocking call."""
    import threading

    ident = threading.main_thread().ident
    signals = compat.signal_module()
    try:
        if ident is not None and hasattr(signals, "pthread_kill"):
            signals.pthread_kill(ident, signum)
        else:
            os.kill(os.getpid(), signum)
    except (OSError, ValueError):
        os.kill(os.getpid(), signum)


# Faults are raised in the thread that caused them; every other signal should reach the
# main thread, where Python runs its handlers.
_SYNCHRONOUS = {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGABRT", "SIGSYS"}


def start_thread(thread: threading.Thread) -> None:
    """Start one of our threads with asynchronous signals blocked in it.

    The kernel hands a process-wide signal (SIGTERM, SIGINT...) to any thread not blocking
    it. Caught by our thread, it leaves a Python handler pending until the main thread
    next runs Python code, which never happens if that thread waits in a lock or a read
    (a pool worker waiting for its next task): the untraced program dies by the signal,
    the traced one would hang. Blocked here, the signal goes to the main thread.
    """
    signals = compat.signal_module()
    mask = getattr(signals, "pthread_sigmask", None)
    if mask is None:
        thread.start()
        return
    synchronous = {getattr(signals, name) for name in _SYNCHRONOUS if hasattr(signals, name)}
    blocked = set(signals.valid_signals()) - synchronous
    previous = mask(signals.SIG_BLOCK, blocked)  # the new thread inherits this mask
    try:
        thread.start()
    finally:
        mask(signals.SIG_SETMASK, previous)


def _die_by(signum: int) -> None:
    _real_signal(signum, SIG_DFL)
    os.kill(os.getpid(), signum)


def _on_main_thread() -> bool:
    threading = sys.modules.get("threading")
    # Without `threading` loaded no thread of Python's making exists: this is the main one.
    return threading is None or threading.current_thread() is threading.main_thread()


_fork_callbacks: list[weakref.WeakMethod[Callable[[], None]]] = []
_fork_hooked = False


def after_fork_in_child(callback: Callable[[], None]) -> None:
    """Run the bound method `callback` in each forked child, for as long as its object lives.

    One process-wide hook serves every caller and holds their objects weakly, so a
    re-initialized client does not leave its old pipelines registered and alive.
    """
    global _fork_hooked
    import weakref

    _fork_callbacks[:] = [ref for ref in _fork_callbacks if ref() is not None]
    _fork_callbacks.append(weakref.WeakMethod(callback))  # type: ignore[arg-type]
    if not _fork_hooked and hasattr(os, "register_at_fork"):
        _fork_hooked = True
        os.register_at_fork(after_in_child=_run_fork_callbacks)


def _run_fork_callbacks() -> None:
    for ref in list(_fork_callbacks):
        callback = ref()
        if callback is None:
            continue
        try:
            callback()
        except Exception as exc:  # the child must start, whatever happens to our state
            _logger().warning(
                "traceroot: resetting tracing after fork failed (%s)", type(exc).__name__
            )


def live_fork_callbacks() -> int:
    """How many objects the fork hook still serves."""
    return sum(1 for ref in _fork_callbacks if ref() is not None)


class _Anchor:
    """A weak-referenceable owner for the multiprocessing finalizer."""


_anchor = _Anchor()


def _register_mp_finalizer() -> None:
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None:
        return
    # Registered to run after multiprocessing clears its finalizers in the new child.
    mp_util.register_after_fork(_anchor, lambda anchor: _register_now())


def _register_now() -> None:
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(_anchor, run_exit_shutdown, exitpriority=100)


# -- pool workers --------------------------------------------------------------------------


def _on_sigterm_in_pool_worker(signum: int, frame: FrameType | None) -> None:
    if not _postponed(signum, frame):
        _exit_by_signal(signum)


def _worker_waiting() -> None:
    """The worker has no task: a SIGTERM now should deliver its spans first."""
    if _real_getsignal(SIGTERM) == SIG_DFL:
        _real_signal(SIGTERM, _on_sigterm_in_pool_worker)


def _worker_busy() -> None:
    """The worker runs a task: SIGTERM ends it at once, as without us."""
    if _real_getsignal(SIGTERM) is _on_sigterm_in_pool_worker:
        _real_signal(SIGTERM, SIG_DFL)


class _Inbox:
    """A pool worker's task queue: between tasks the worker is waiting."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def get(self) -> Any:
        _worker_waiting()
        # In slices: a SIGTERM caught just before a single blocking wait would leave our
        # handler pending, and the worker waiting, for ever.
        task = compat.simple_queue_get(self._queue, _WAIT_SLICE)
        if task is not None:  # None: the pool is closing and the worker exits
            _worker_busy()
        return task

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


class _Outbox:
    """A pool worker's result queue: once a result is sent the pool may end the worker."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    def put(self, item: Any) -> None:
        _worker_waiting()
        self._queue.put(item)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


def _patch_pool_worker() -> None:
    import functools
    import threading
    from multiprocessing import pool as mp_pool

    original = mp_pool.worker  # type: ignore[attr-defined]
    if getattr(original, _WRAPPED, False):
        return

    @functools.wraps(original)
    def worker(inqueue: Any, outqueue: Any, *args: Any, **kwargs: Any) -> Any:
        # A process pool's worker runs on its process's main thread; a ThreadPool's does not.
        if threading.current_thread() is threading.main_thread():
            exit_allowance.pool_worker = True
            inqueue, outqueue = _Inbox(inqueue), _Outbox(outqueue)
        return original(inqueue, outqueue, *args, **kwargs)

    setattr(worker, _WRAPPED, True)
    mp_pool.worker = worker  # type: ignore[attr-defined]  # looked up for each new worker


def _patch_billiard_worker() -> None:
    """Celery's prefork pool (billiard) ends a worker with `os._exit` from inside its run,
    past every finalizer: a warm shutdown or a recycled worker (--max-tasks-per-child) lost
    what the worker still had queued. Its `Worker._do_exit` now delivers them first."""
    import functools

    from billiard import pool as billiard_pool

    worker = getattr(billiard_pool, "Worker", None)
    original = getattr(worker, "_do_exit", None)
    if worker is None or not callable(original) or getattr(original, _WRAPPED, False):
        return  # a billiard laid out otherwise: its workers' last spans may be lost

    @functools.wraps(original)
    def do_exit(self: Any, *args: Any, **kwargs: Any) -> Any:
        run_exit_shutdown()
        return original(self, *args, **kwargs)

    setattr(do_exit, _WRAPPED, True)
    worker._do_exit = do_exit


def _guarded(patch: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            patch()
        except Exception as exc:
            _logger().warning(
                "traceroot: spans of multiprocessing pool workers may be lost (%s failed: %s)",
                patch.__name__,
                exc,
            )

    return run


class SigtermFlush:
    """Flush on SIGTERM before the program's own handling (or the default exit by signal).

    A handler the program installs later is wrapped, not replaced, so both run. With the
    default disposition the process then shuts down (flush, report what was not delivered)
    and dies by the signal; all of it within the exit allowance.
    """

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._user_handler: Handler = SIG_DFL
        self._flushing = False  # a second SIGTERM during our flush only reaches the program

    def install(self) -> None:
        """Only on the main thread, and only when the handler is still the default.

        The `signal` module's `signal()` and `getsignal()` are replaced now, or when it is
        imported if it is not yet (the start-up hook sets the handler without loading it).
        """
        current = _real_getsignal(SIGTERM)
        if current not in (SIG_DFL, None):
            self._user_handler = current
        try:
            _real_signal(SIGTERM, self._handle)
        except ValueError:  # not the main thread (of the main interpreter)
            self._user_handler = SIG_DFL
            return
        import_hooks.when_imported("signal", self._patch_signal_module)

    def _patch_signal_module(self) -> None:
        global _real_signal, _real_getsignal
        import signal

        if signal.signal != self._signal:
            _real_signal, _real_getsignal = signal.signal, signal.getsignal
        signal.signal = self._signal  # type: ignore[assignment]
        signal.getsignal = self._getsignal  # type: ignore[assignment]

    def _signal(self, signum: int, handler: Handler) -> Handler:
        if signum != SIGTERM:
            return _real_signal(signum, handler)  # type: ignore[no-any-return]
        previous = self._user_handler
        self._user_handler = handler
        if handler == SIG_IGN:
            _real_signal(signum, handler)
        else:
            _real_signal(signum, self._handle)
        return _as_handler(previous)

    def _getsignal(self, signum: int) -> Handler:
        if signum == SIGTERM:
            return _as_handler(self._user_handler)
        return _real_getsignal(signum)  # type: ignore[no-any-return]

    def _handle(self, signum: int, frame: FrameType | None) -> Any:
        if _postponed(signum, frame):
            return None
        handler = self._user_handler
        if not callable(handler) and handler != SIG_IGN:
            _exit_by_signal(signum)  # the default disposition: the process ends here
            return None
        if callable(handler):
            exit_allowance.begin()  # the program is most likely ending: bound what follows
        # Else our shutdown (or flush), which it interrupted, delivers them already.
        if not _state.running and not self._flushing:
            self._flushing = True
            _run_in_thread(self._flush_quietly, "traceroot-sigterm-flush")
        if callable(handler):
            return handler(signum, frame)
        return None

    def _flush_quietly(self) -> None:
        try:
            self._flush()
        except Exception as exc:  # the program's shutdown matters more than our spans
            _logger().debug("traceroot: flush on SIGTERM failed: %r", exc)
        finally:
            self._flushing = False


def _as_handler(value: Handler) -> Handler:
    """SIG_DFL / SIG_IGN as the `signal` module gives them (enum members), once it is loaded."""
    signal = sys.modules.get("signal")
    handlers = getattr(signal, "Handlers", None)
    if handlers is not None and isinstance(value, int) and not isinstance(value, handlers):
        try:
            return handlers(value)  # type: ignore[no-any-return]
        except ValueError:
            return value
    return value
