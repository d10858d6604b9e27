"""Batch rendering: many files, in this process or in parallel worker processes.

``plan`` decides what a batch renders (``--skip-existing`` leaves out outputs that exist complete,
cosine_host.offline.jobs.complete_output); ``run`` renders the rest and hands each file's outcome
to a callback as it finishes:

- ``workers=1``: one after the other in this process;
- ``workers=N``: N workers: N - 1 worker processes (multiprocessing's *spawn* context) and a
  thread of this process (which has loaded torch already), each building its engine once from
  the config (one per channel count and sample rate met, reset between files) and rendering
  file after file as the driver hands them out. Each worker runs
  ``threads_per_worker(N)`` torch/BLAS threads (set before numpy and torch load in it), so N
  workers do not oversubscribe the cores. Outputs are bit-identical to ``workers=1``: the same
  ``render_file`` with the same options, and dither noise is seeded per file.

A file that fails with a UserError becomes a ``failed`` outcome and the rest go on, as before.
SIGTERM, SIGHUP or Ctrl-C in the driver stop every worker process with SIGTERM (they ignore SIGINT,
so a Ctrl-C at the terminal reaches them only through the driver) and the thread at its next chunk;
a worker removes its temporary file (cosine_host.files.atomic_path) before it exits, and the
interrupt goes on to the CLI (one line, non-zero exit). stream/offline/cluster.py runs the same
outcomes on Ray actors.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import sys
import traceback

from cosine_host.errors import UserError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
RENDER_OPTIONS = ("subtype", "format", "dither", "samplerate", "quality", "bitrate_mode",
                  "overwrite", "make_folder")


def cores() -> int:
    """CPU cores this process may run on (its affinity where the platform says, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def parse_jobs(value) -> int:
    """``--jobs``: a whole number >= 1, or "auto" (= ``cores()``; a batch too small to gain
    then gets 1, ``auto_workers``). Default (None): 1."""
    if value is None:
        return 1
    text = str(value).strip().lower()
    if text == "auto":
        return cores()
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise UserError(f"--jobs {value!r}: give a whole number of worker processes >= 1, or "
                        f"auto (this machine's {cores()} cores)")
    return jobs


MAX_WORKERS_PER_CORE = 4


def check_workers(workers: int, total_cores: int | None = None) -> str | None:
    """Refuse a worker count past ``MAX_WORKERS_PER_CORE`` x the cores (each worker process loads
    torch, a few hundred MB, and more workers than cores only take turns on them). Returns a
    warning (one line) when ``workers`` is above the core count, else None."""
    total = total_cores or cores()
    limit = MAX_WORKERS_PER_CORE * total
    if workers > limit:
        raise UserError(f"--jobs {workers}: at most {limit} worker processes on this machine "
                        f"({MAX_WORKERS_PER_CORE} x its {total} cores); more only take turns on "
                        f"the cores and each loads torch (hundreds of MB). Use --jobs auto "
                        f"({total})")
    if workers > total:
        return (f"--jobs {workers} is more than this machine's {total} cores: the workers "
                f"take turns on them, so each file renders slower (--jobs auto: {total})")
    return None


AUTO_MIN_AUDIO_S = 360.0
"""``--jobs auto`` renders a batch of less audio than this (seconds, all files) in one process:
below it a worker's start-up (a new interpreter importing torch) costs more than the files it
takes over save (benchmarks/batch.py; numbers in benchmarks/README.md)."""


def auto_workers(cores_available: int, audio_seconds: float, busy: float | None = None) -> int:
    """The worker count of ``--jobs auto`` for a batch of ``audio_seconds``: 1 below
    ``AUTO_MIN_AUDIO_S``, else one per core that other work leaves free (``busy``: cores busy
    now, default ``busy_cores()``; with the cores taken elsewhere, more workers are slower
    than one), at least 1 and at most ``cores_available``."""
    if audio_seconds < AUTO_MIN_AUDIO_S:
        return 1
    if busy is None:
        busy = busy_cores()
    return max(1, min(cores_available, round(cores_available - busy)))


BUSY_SAMPLE_S = 0.2
"""How long ``busy_cores`` watches the machine (seconds)."""


def busy_cores(interval_s: float = BUSY_SAMPLE_S) -> float:
    """Cores busy with other programs now: ``busy_share`` of /proc/stat's counters over
    ``interval_s`` (this process sleeps meanwhile), times the CPU count. 0.0 where /proc/stat
    is missing. (The load average would count the previous command's own workers for a
    minute after they ended.)"""
    import time

    def ticks():
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]

    try:
        before = ticks()
        time.sleep(interval_s)
        return busy_share(before, ticks()) * (os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        return 0.0


def busy_share(before: list[int], after: list[int]) -> float:
    """The share of all CPU time between two readings of /proc/stat's ``cpu`` line (user,
    nice, system, idle, iowait, irq, softirq, steal, ...) that programs took: user, nice and
    steal (the hypervisor's). Kernel time is left out: after a render it is mostly the page
    cache writing the outputs back, which passes and leaves the cores to the workers."""
    total = sum(after) - sum(before)
    if total <= 0:
        return 0.0
    taken = sum(after[k] - before[k] for k in (0, 1, 7) if k < len(after))
    return min(1.0, max(0.0, taken / total))


def threads_per_worker(workers: int, total: int | None = None) -> int:
    """torch/BLAS threads for each of ``workers`` workers on ``total`` cores (default: this
    machine's): max(1, total // workers)."""
    return max(1, (total or cores()) // max(1, workers))


# --- planning ---------------------------------------------------------------------------------

def plan(jobs: list[tuple[str, str]], options: dict, skip_existing: bool = False
         ) -> tuple[list[tuple[int, str, str]], list[dict]]:
    """Split (input, output) ``jobs`` into (to render, skipped).

    To render: (index in ``jobs``, input, output). Skipped (only with ``skip_existing``):
    {"input", "output", "reason"} for each output that exists complete (frame count, sample
    rate, channels, container and sample format as the render with ``options`` would write
    them). An output that exists but is not complete is rendered again, which needs
    --overwrite like any existing output (cosine_host.outputs.check_outputs); the error says why.
    """
    from cosine_host.offline.jobs import complete_output
    todo, skipped = [], []
    shape = {k: options.get(k) for k in ("subtype", "format", "samplerate")}
    for index, (source, target) in enumerate(jobs):
        if skip_existing and os.path.lexists(target):
            done, why = complete_output(source, target, **shape)
            if done:
                skipped.append({"input": source, "output": target, "reason": why})
                continue
            if not options.get("overwrite"):
                raise UserError(f"output {target!r} exists but is not what this render writes "
                                f"({why}); pass --overwrite to render it again")
        todo.append((index, source, target))
    return todo, skipped


def report_paths(report_dir: str, out_dir: str, todo) -> dict[int, str]:
    """{index: report path} for ``--report-dir`` (see ``report_path``); the folder must exist."""
    if not os.path.isdir(report_dir):
        raise UserError(f"--report-dir {report_dir!r} is not a folder; create it first "
                        f"(mkdir -p {report_dir})")
    return {index: report_path(report_dir, out_dir, target) for index, _, target in todo}


def report_path(report_dir: str, out_dir: str, output: str) -> str:
    """Where ``--report-dir`` puts the report of ``output``: its path below ``out_dir``, mirrored
    below ``report_dir``, plus ".json" (``DIR/live/take.wav`` -> ``REPORTS/live/take.wav.json``).
    Outputs are distinct files, so their reports are too."""
    below = os.path.relpath(os.path.abspath(output), os.path.abspath(out_dir))
    return os.path.join(report_dir, below + ".json")


# --- one file ---------------------------------------------------------------------------------

class EngineCache:
    """Engines built from one config, one per (channels, samplerate in Hz), reset before reuse:
    the ``engine_for`` of cosine_host.offline.render.render_file."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.engines = {}

    def __call__(self, channels: int, samplerate: int):
        from cosine_host.engine.engine import Engine
        engine = self.engines.get((channels, samplerate))
        if engine is None:
            engine = Engine.from_config(self.cfg, blocksize=0, channels=channels,
                                        samplerate=samplerate)
            self.engines[(channels, samplerate)] = engine
        else:
            engine.reset()
        return engine


def render_one(cfg, engines: EngineCache, index: int, source: str, target: str,
               options: dict, progress=None) -> dict:
    """Render one file of a batch: {"index", "input", "output", "report"} on success,
    {"index", "input", "output", "error"} (one line) when it fails with a UserError. Any other
    exception (a bug) propagates. ``progress``: render_file's, called after every chunk."""
    from cosine_host.offline.render import render_file
    outcome = {"index": index, "input": source, "output": target}
    try:
        outcome["report"] = render_file(cfg, source, target, engine_for=engines,
                                        progress=progress,
                                        **{k: options.get(k) for k in RENDER_OPTIONS
                                           if options.get(k) is not None})
    except UserError as e:
        outcome["error"] = str(e)
    return outcome


# --- running ----------------------------------------------------------------------------------

class WorkerError(RuntimeError):
    """A worker failed with an unexpected exception (a bug); the message holds its traceback."""


def run(cfg, todo: list[tuple[int, str, str]], options: dict, workers: int = 1,
        on_outcome=None) -> list[dict]:
    """Render ``todo`` ((index, input, output) triples) with ``workers`` processes (1: in this
    one); call ``on_outcome(outcome)`` for each file as it finishes (see ``render_one``).

    Returns the outcomes sorted by index. Raises KeyboardInterrupt (or
    cosine_host.interrupts.Terminated) after stopping the workers, WorkerError for a bug in a
    worker.
    """
    outcomes = []

    def done(outcome):
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    workers = max(1, min(workers, len(todo)))
    if workers == 1:
        engines = EngineCache(cfg)
        for index, source, target in todo:
            done(render_one(cfg, engines, index, source, target, options))
    else:
        _Pool(cfg, options, workers).run(todo, done)
    return sorted(outcomes, key=lambda o: o["index"])


@contextlib.contextmanager
def thread_environment(threads: int):
    """os.environ with every BLAS/OpenMP thread variable set to ``threads``, restored after:
    processes started inside inherit it, and their numpy and torch read it when they load."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored in this process meanwhile (processes started inside inherit that)."""
    import signal
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:          # not the main thread: leave it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def limit_torch_threads(threads: int) -> None:
    """torch's intra-op threads = ``threads``, inter-op threads = 1 (where still allowed)."""
    import torch
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):     # only allowed before any parallel work
        torch.set_num_interop_threads(1)


START_METHOD = "spawn"       # fork would copy the driver's thread pools and locks mid-use
_prestarted: list[dict] = []


def _spawn(context, threads: int) -> dict:
    """A worker process with ``threads`` torch/BLAS threads, waiting for its config."""
    parent, child = context.Pipe()
    proc = context.Process(target=_work, args=(child, threads), name="cosine-render-worker",
                           daemon=True)
    with thread_environment(threads), _sigint_ignored():
        proc.start()        # the worker inherits SIG_IGN for SIGINT from its first moment
    child.close()
    return {"proc": proc, "thread": None, "conn": parent, "task": None, "threads": threads}


def prestart(workers: int) -> None:
    """Start the ``workers - 1`` worker processes of a batch now, before this process loads
    torch and the config: a worker's start-up (a new interpreter importing torch, about 2.5 s)
    then runs beside this process's own instead of after it. The pool takes them over
    (``_take_prestarted``); any it does not take are stopped with this process (daemons)."""
    import multiprocessing
    context = multiprocessing.get_context(START_METHOD)
    threads = threads_per_worker(workers)
    for _ in range(workers - 1):
        _prestarted.append(_spawn(context, threads))


def _take_prestarted(threads: int) -> dict | None:
    """A prestarted worker with this thread count that is still alive, else None."""
    while _prestarted:
        worker = _prestarted.pop()
        if worker["threads"] == threads and worker["proc"].is_alive():
            return worker
        _stop_process(worker)
    return None


def _stop_process(worker: dict) -> None:
    with contextlib.suppress(OSError):
        worker["conn"].close()
    worker["proc"].terminate()
    worker["proc"].join(timeout=30)


class _Pool:
    """N workers fed one file at a time over a pipe each: N - 1 spawned worker processes, and
    this process itself, rendering in a thread while its main thread hands out the files (it
    has loaded torch already, so that saves one worker's start-up; its render stops at the
    next chunk when the batch is stopped)."""

    def __init__(self, cfg, options: dict, workers: int):
        import multiprocessing
        import threading
        self.context = multiprocessing.get_context(START_METHOD)
        self.cfg = cfg
        self.cfg_bytes = pickle.dumps(cfg)
        self.options = options
        self.workers = workers
        self.threads = threads_per_worker(workers)
        self.procs = []
        self.stopping = threading.Event()

    def _start(self):
        worker = _take_prestarted(self.threads) or _spawn(self.context, self.threads)
        worker["conn"].send((self.cfg_bytes, self.options))
        self.procs.append(worker)
        return worker

    def _start_here(self):
        import multiprocessing
        import threading
        parent, child = multiprocessing.Pipe()
        thread = threading.Thread(target=_work_here, name="cosine-render-here", daemon=True,
                                  args=(child, self.cfg, self.options, self.stopping))
        thread.start()
        worker = {"proc": None, "thread": thread, "conn": parent, "task": None}
        self.procs.append(worker)
        return worker

    def run(self, todo, done) -> None:
        import torch
        from threadpoolctl import threadpool_limits
        saved_threads = torch.get_num_threads()
        try:
            torch.set_num_threads(self.threads)
            # this process renders too: its BLAS pools and the DCT's threads (cosine_host.engine.dct.
            # cpu_workers reads OMP_NUM_THREADS when its engines are built) keep to its share
            with threadpool_limits(self.threads), thread_environment(self.threads):
                self._run(todo, done)
        except BaseException:
            self.stop()
            raise
        finally:
            torch.set_num_threads(saved_threads)
            while _prestarted:              # started for a larger batch than this one
                _stop_process(_prestarted.pop())

    def _run(self, todo, done) -> None:
        from multiprocessing.connection import wait
        pending = list(todo)
        pending.reverse()           # pop() takes them in order
        idle = [self._start() for _ in range(self.workers - 1)] + [self._start_here()]
        busy = []
        while pending or busy:
            while idle and pending:
                worker = idle.pop()
                worker["task"] = pending.pop()
                worker["conn"].send(worker["task"])
                busy.append(worker)
            ready = wait([w["conn"] for w in busy]
                         + [w["proc"].sentinel for w in busy if w["proc"] is not None])
            for worker in list(busy):
                sentinel = worker["proc"].sentinel if worker["proc"] is not None else None
                if worker["conn"] not in ready and sentinel not in ready:
                    continue
                try:
                    kind, payload = worker["conn"].recv()
                except (EOFError, OSError):
                    index, source, target = worker["task"]
                    if worker["proc"] is not None:
                        worker["proc"].join()
                        why = f"exit code {worker['proc'].exitcode}"
                    else:
                        why = "in this process"
                    done({"index": index, "input": source, "output": target,
                          "error": f"the worker rendering it stopped ({why})"})
                    busy.remove(worker)
                    self.procs.remove(worker)
                    if pending:
                        idle.append(self._start())
                    continue
                if kind == "crash":
                    raise WorkerError(payload)
                busy.remove(worker)
                worker["task"] = None
                done(payload)
                idle.append(worker)
        for worker in self.procs:
            with contextlib.suppress(OSError):
                worker["conn"].send(None)
        for worker in self.procs:
            (worker["proc"] or worker["thread"]).join()

    def stop(self) -> None:
        """SIGTERM every worker process and stop the render here at its next chunk (each
        removes its temporary file), then wait for them."""
        self.stopping.set()
        for worker in self.procs:
            if worker["proc"] is not None and worker["proc"].is_alive():
                worker["proc"].terminate()
            elif worker["thread"] is not None:
                worker["conn"].close()          # a thread waiting for a task sees EOF
        for worker in self.procs:
            if worker["thread"] is not None:
                worker["thread"].join(timeout=60)
                continue
            worker["proc"].join(timeout=30)
            if worker["proc"].is_alive():
                worker["proc"].kill()
                worker["proc"].join()
            worker["conn"].close()


def _work_here(conn, cfg, options: dict, stopping) -> None:
    """The worker thread in the driver's process: like ``_work``; ``stopping`` (an Event) set
    stops its render after the current chunk."""
    def check(done, total):
        if stopping.is_set():
            raise KeyboardInterrupt

    engines = EngineCache(cfg)
    try:
        while not stopping.is_set():
            task = conn.recv()
            if task is None:
                break
            try:
                outcome = render_one(cfg, engines, *task, options, progress=check)
            except KeyboardInterrupt:
                break
            except Exception:
                conn.send(("crash", traceback.format_exc()))
                break
            conn.send(("done", outcome))
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


def _work(conn, threads: int) -> None:
    """A worker process's life: load the engine's modules, wait for (config, options), build
    engines from the config, render what the driver sends until it sends None. SIGTERM/SIGHUP
    raise Terminated (temporary files are removed on the way out); SIGINT is ignored (the
    driver decides)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from cosine_host.interrupts import install
    install()
    stops = {getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)}
    try:
        # A stop raised inside torch's import (C++ calling back into Python) aborts the process
        # with C++ text; held back until the import is done, it raises Terminated here instead.
        mask = getattr(signal, "pthread_sigmask", lambda how, signals: None)
        mask(signal.SIG_BLOCK, stops)
        try:
            limit_torch_threads(threads)
            # torch, the engine and the DCT's backend (else loaded by the first engine build),
            # while the driver gets ready
            import cosine_host.offline.render  # noqa: F401
            import scipy.fft  # noqa: F401
        finally:
            mask(signal.SIG_UNBLOCK, stops)
        cfg_bytes, options = conn.recv()
        cfg = pickle.loads(cfg_bytes)
        engines = EngineCache(cfg)
        while True:
            task = conn.recv()
            if task is None:
                break
            try:
                outcome = render_one(cfg, engines, *task, options)
            except Exception:
                conn.send(("crash", traceback.format_exc()))
                return
            conn.send(("done", outcome))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return
    # Done on the driver's word: every output is renamed into place and closed, so the
    # interpreter's teardown (torch's included) would only delay the driver's exit, which
    # waits for this process.
    conn.close()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)
