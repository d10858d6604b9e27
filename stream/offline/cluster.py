"""Batch rendering on Ray: the jobs of stream/offline/batch.py as Ray actors.

``run`` connects to a Ray cluster (``address``: "auto" or an address such as "ray://head:10001" or
"head:6379") or starts a local instance (address "local"; reused when this process already runs
one), starts actors that each build their engine once from the config
(cosine_host.offline.batch.EngineCache) and hands them files one at a time. Workers read their
inputs and write their outputs themselves, so every node must see the same paths (a shared
filesystem) and have cosine-host installed; the driver gathers the outcomes. With ``model.device``
cuda each actor asks for a share of the cluster's GPUs.

Ray is an optional extra (``pip install 'cosine-host[cluster]'``), imported only here, lazily.
Ctrl-C, SIGTERM and SIGHUP cancel the running tasks (each stops after its current chunk and
removes its temporary file), stop the actors and shut down a local instance.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pickle
import time

from cosine_host.offline import batch
from cosine_host.errors import UserError

LOCAL = "local"
MISSING = ("--ray needs Ray, an optional extra: pip install 'cosine-host[cluster]' "
           "(or pip install ray)")


def import_ray():
    """The ray module, or a UserError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise UserError(MISSING) from None
    return ray


def check_address(address: str) -> str:
    """``--ray``'s value: "local", "auto" or an address with a port (host:port, ray://...)."""
    if address in (LOCAL, "auto") or ":" in address:
        return address
    raise UserError(f"--ray {address!r} is not a Ray address (auto, host:port or "
                    f"ray://host:port); put --ray after the paths, or write --ray=ADDRESS")


CONNECT_TIMEOUT_S = 5.0
"""How long ``check_reachable`` waits for a cluster address to accept a connection."""


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise a one-line UserError when nothing accepts a TCP connection at a cluster
    ``address`` (host:port or ray://host:port) within ``timeout_s``: Ray itself would retry
    for minutes, printing its own log lines. "local" and "auto" are not checked."""
    import socket
    from urllib.parse import urlsplit
    if address in (LOCAL, "auto"):
        return
    try:
        parts = urlsplit(address if "://" in address else f"tcp://{address}")
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise UserError(f"--ray {address!r}: expected host:port or ray://host:port, e.g. "
                        f"--ray=head:6379")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        why = (f"no answer within {timeout_s:g} s" if isinstance(e, TimeoutError)
               else (e.strerror or str(e)).lower())
        raise UserError(f"cannot reach the Ray cluster at {address!r} ({why} at {host}:{port}); "
                        f"check the address (ray status on the head node shows it), or use "
                        f"--ray alone for a local instance") from None


class RenderActor:
    """One Ray actor: an engine cache built once from the config, rendering files on request.

    Args:
        cfg_bytes: the pickled cosine_host.config.schema.Config.
        options: render_file's options (cosine_host.offline.batch.RENDER_OPTIONS).
        threads: torch threads for this actor.
        cwd: the driver's working folder; relative paths are resolved there when it exists on
            this node (a shared filesystem).
    """

    def __init__(self, cfg_bytes: bytes, options: dict, threads: int, cwd: str):
        batch.limit_torch_threads(threads)
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self.cfg = pickle.loads(cfg_bytes)
        self.options = options
        self.engines = batch.EngineCache(self.cfg)

    def render(self, index: int, source: str, target: str) -> dict:
        """cosine_host.offline.batch.render_one's outcome, or {"index", ..., "cancelled": True} when the
        driver cancelled the task (checked after every chunk; the temporary file is removed)."""
        try:
            return batch.render_one(self.cfg, self.engines, index, source, target,
                                    self.options, progress=_cancel_check())
        except KeyboardInterrupt:
            return {"index": index, "input": source, "output": target, "cancelled": True}


def _cancel_check():
    import ray
    context = ray.get_runtime_context()
    if not hasattr(context, "is_canceled"):
        return None

    def check(done, total):
        if context.is_canceled():
            raise KeyboardInterrupt
    return check


def run(cfg, todo: list[tuple[int, str, str]], options: dict, address: str = LOCAL,
        workers: int | None = None, on_outcome=None) -> tuple[list[dict], dict]:
    """Render ``todo`` ((index, input, output) triples) on Ray actors.

    Args:
        address: "local" (a new local instance with this machine's cores, or the one this
            process already runs), "auto" or a cluster address.
        workers: actors to start (default: the cluster's CPUs), never more than files. on_outcome:
        called with each file's outcome as it finishes (cosine_host.offline.batch.render_one).
    Returns:
        (outcomes sorted by index, {"address", "actors", "cpus", "gpus", "gpus_per_actor",
        "startup_s": seconds from connecting to every actor built}).
    """
    ray = import_ray()
    started = time.perf_counter()
    check_reachable(address)
    started_here = False
    if not ray.is_initialized():
        import logging
        try:
            with _keep_signal_handlers():
                ray.init(address=address, num_cpus=batch.cores() if address == LOCAL else None,
                         include_dashboard=False, logging_level=logging.ERROR,
                         log_to_driver=False, configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"cannot reach the Ray cluster at {address!r}: "
                            f"{' '.join(str(e).split())}") from None
        started_here = True
    actors = []
    try:
        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
        count = max(1, min(workers or int(cpus), len(todo)))
        gpu_share = _gpu_share(cfg, gpus, count)
        threads = max(1, int(cpus // count))
        env = {name: str(threads) for name in batch.THREAD_VARIABLES}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_code_root(), os.environ.get("PYTHONPATH")) if p)
        remote = ray.remote(RenderActor)
        cfg_bytes = pickle.dumps(cfg)
        actors = [remote.options(num_cpus=cpus / count, num_gpus=gpu_share,
                                 runtime_env={"env_vars": env})
                  .remote(cfg_bytes, options, threads, os.getcwd()) for _ in range(count)]
        ray.get([a.__ray_ready__.remote() for a in actors])
        info = {"address": address, "actors": count, "cpus": cpus, "gpus": gpus,
                "gpus_per_actor": gpu_share, "startup_s": time.perf_counter() - started}
        with _signal_names_kept():
            outcomes = _dispatch(ray, actors, todo, on_outcome)
        return sorted(outcomes, key=lambda o: o["index"]), info
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if started_here:
            ray.shutdown()


@contextlib.contextmanager
def _keep_signal_handlers():
    """Put back this process's SIGINT/SIGTERM/SIGHUP handlers after Ray installs its own (its
    SIGTERM handler prints a stack dump), so they stop a batch as cosine_host.interrupts says."""
    import signal
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    saved = {n: signal.getsignal(getattr(signal, n)) for n in names}
    try:
        yield
    finally:
        for name, handler in saved.items():
            if handler is not None:
                with contextlib.suppress(ValueError):    # not the main thread
                    signal.signal(getattr(signal, name), handler)


@contextlib.contextmanager
def _signal_names_kept():
    """Ray turns any exception a signal handler raises inside its calls into a plain
    KeyboardInterrupt: note which SIGTERM/SIGHUP arrived and raise it again as
    cosine_host.interrupts.Terminated (exit code and message as without Ray)."""
    import signal

    from cosine_host.interrupts import Terminated
    seen, previous = [], {}
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        handler = signal.getsignal(signum) if signum is not None else None
        if callable(handler):
            def noted(number, frame, handler=handler):
                seen.append(number)
                handler(number, frame)
            previous[signum] = handler
            signal.signal(signum, noted)
    try:
        yield
    except KeyboardInterrupt as e:
        if seen and not isinstance(e, Terminated):
            raise Terminated(seen[-1]) from None
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _gpu_share(cfg, gpus: float, actors: int) -> float:
    """GPUs each actor asks for: 0 on cpu; with cuda (or auto on a cluster with GPUs) an equal
    share of the cluster's, at most 1. model.device cuda on a cluster without GPUs is an
    error."""
    device = cfg.model.device
    if device == "cpu" or (device == "auto" and gpus == 0):
        return 0
    if gpus == 0:
        raise UserError("model.device is cuda but the Ray cluster has no GPU; use "
                        "--set model.device=cpu or a cluster with GPUs")
    return min(1.0, gpus / actors)


def _code_root() -> str | None:
    """The folder that holds this driver's installed ``cosine_host/`` package, for the actors'
    path; None for a checkout, whose editable install (``pip install -e .``) the actors share."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(batch.__file__)))
    return os.path.dirname(package) if os.path.basename(package) == "cosine_host" else None


def _dispatch(ray, actors, todo, on_outcome) -> list[dict]:
    pending = list(reversed(todo))
    free = list(actors)
    running = {}
    outcomes = []
    try:
        while pending or running:
            while free and pending:
                actor, task = free.pop(), pending.pop()
                running[actor.render.remote(*task)] = (actor, task)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, (index, source, target) = running.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                outcome = {"index": index, "input": source, "output": target,
                           "error": f"the Ray actor rendering it died ({type(e).__name__})"}
                actor = None
            except ray.exceptions.RayTaskError as e:
                raise batch.WorkerError(str(e)) from None
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
            if actor is not None:
                free.append(actor)
            elif not free and not running and pending:
                raise UserError("every Ray actor died; see the Ray logs")
    except BaseException:
        _cancel(ray, running)
        raise
    return outcomes


def _cancel(ray, running: dict) -> None:
    """Cancel running tasks, give them a moment to stop after their chunk, then remove any
    temporary file a stopped task left (cosine_host.files.atomic_path names them .NAME.*SUFFIX)."""
    refs = list(running)
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref)
    with contextlib.suppress(Exception):
        ray.wait(refs, num_returns=len(refs), timeout=30)
    for actor, _ in running.values():
        with contextlib.suppress(Exception):
            ray.kill(actor)
    for _, (_, _, target) in running.values():
        folder, name = os.path.split(target)
        suffix = os.path.splitext(name)[1] or ".tmp"
        for leftover in glob.glob(os.path.join(glob.escape(folder or "."),
                                               glob.escape(f".{name}.") + "*"
                                               + glob.escape(suffix))):
            with contextlib.suppress(OSError):
                os.remove(leftover)
