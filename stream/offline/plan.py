"""What `render` does with its arguments: which files it renders and where (``plan_render``),
and rendering them (``render_planned``): one file, or a batch here, in worker processes or on
Ray, with per-file reports and a summary.

The checks all come before any work: outputs that exist (without ``--overwrite``) or that would
replace the config, the checkpoint in use or an input are refused (cosine_host.outputs), so a
refused command has written nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from cosine_host.errors import UserError
from cosine_host.offline import batch


@dataclass
class RenderPlan:
    """A checked render: ``jobs`` (input, output) in the command's order, ``todo`` (index, input,
    output) to render, ``skipped`` ({"input", "output", "reason"}, --skip-existing), ``reports``
    ({index: path} of --report-dir), the render ``options`` of
    cosine_host.offline.render.render_file,
    ``out_dir`` (None: one file), ``workers`` (--jobs, at most one per file to render),
    ``ray_address`` (None: no Ray) and ``warnings`` (lines to show before rendering)."""
    cfg: object
    jobs: list
    todo: list
    skipped: list
    options: dict
    out_dir: str | None = None
    reports: dict = field(default_factory=dict)
    workers: int = 1
    workers_given: bool = False
    ray_address: str | None = None
    warnings: list = field(default_factory=list)

    @property
    def single(self) -> bool:
        """One INPUT OUTPUT pair (no --out-dir): its report is the render's own."""
        return self.out_dir is None


def start_workers(jobs_option, out_dir, ray_address, paths=(), recursive: bool = False,
                  container: str | None = None) -> int:
    """``--jobs`` as a worker count (refused past cosine_host.offline.batch.check_workers's
    bound; auto: cosine_host.offline.batch.auto_workers for the batch's audio); with --out-dir
    and more than one worker (no Ray), their processes start now, before this process imports
    torch and loads the config (cosine_host.offline.batch.prestart), but never more than the
    files that ``paths`` name (none when they are wrong: the plan says why)."""
    workers = batch.parse_jobs(jobs_option)
    if ray_address is None:
        batch.check_workers(workers)
    if workers > 1 and out_dir is not None and ray_address is None:
        sources = _sources(paths, out_dir, recursive, container)
        if str(jobs_option).strip().lower() == "auto":
            workers = batch.auto_workers(workers, _audio_seconds(sources))
        batch.prestart(min(workers, len(sources)))
    return workers


def _sources(paths, out_dir, recursive, container) -> list[str]:
    """The input files of a batch of ``paths`` (none when the paths are wrong: the plan says
    why)."""
    from cosine_host.offline.audio_io import check_format_option
    from cosine_host.offline.jobs import plan_jobs
    try:
        return [source for source, _ in plan_jobs(list(paths), out_dir, recursive=recursive,
                                                  format=check_format_option(container))]
    except UserError:
        return []


def _audio_seconds(sources: list[str]) -> float:
    """The audio seconds the headers of ``sources`` promise (unreadable files count 0)."""
    import soundfile as sf
    seconds = 0.0
    for source in sources:
        try:
            seconds += sf.info(source).duration
        except Exception:       # a bad file fails in its render, with its own message
            pass
    return seconds


def plan_render(cfg, paths: list[str], out_dir: str | None = None, *, recursive: bool = False,
                container: str | None = None, report_path: str | None = None,
                report_dir: str | None = None, skip_existing: bool = False,
                workers: int = 1, workers_given: bool = False, ray_address: str | None = None,
                **render_options) -> RenderPlan:
    """Check a render's arguments and decide its work (see the module's docstring).

    ``render_options``: subtype, dither, samplerate, quality, bitrate_mode, overwrite (as
    cosine_host.offline.render.render_file takes them). Raises UserError for anything wrong.
    """
    from cosine_host.offline.audio_io import check_format_option
    from cosine_host.offline.jobs import plan_jobs
    from cosine_host.outputs import check_outputs, protected_paths
    container = check_format_option(container)
    if ray_address is not None:
        from cosine_host.offline import cluster
        ray_address = cluster.check_address(ray_address)
        cluster.import_ray()
    jobs = plan_jobs(list(paths), out_dir, recursive=recursive, format=container)
    options = {**render_options, "format": container, "make_folder": out_dir is not None}
    overwrite = bool(options.get("overwrite"))
    todo, skipped = batch.plan(jobs, options, skip_existing)
    if out_dir is None and report_dir is not None:
        raise UserError("--report-dir writes one report per output of --out-dir; for one file "
                        "use --report")
    reports = batch.report_paths(report_dir, out_dir, todo) if report_dir else {}
    inputs = [("input file", a) for a, _ in jobs]
    protected = protected_paths(cfg, inputs)
    check_outputs([("output", t) for _, _, t in todo] + [("--report", report_path)],
                  protected, overwrite, made_below=out_dir if recursive else None)
    check_outputs([("output", s["output"]) for s in skipped], protected, True)
    if reports:
        check_outputs([("--report-dir", p) for p in reports.values()], protected, overwrite,
                      made_below=report_dir)
    warnings = []
    if ray_address is None and out_dir is not None:
        workers = max(1, min(workers, len(todo)))       # no worker without a file
        warning = batch.check_workers(workers)
        if warning:
            warnings.append(warning)
    return RenderPlan(cfg, jobs, todo, skipped, options, out_dir, reports, workers,
                      workers_given, ray_address, warnings)


def render_planned(plan: RenderPlan, on_outcome=None, progress=None) -> dict:
    """Render what ``plan`` holds.

    One file: returns its report (cosine_host.offline.render.render_file); ``progress(done,
    total)`` in samples. A batch: writes each file's --report-dir report as it finishes, calls
    ``on_outcome(outcome)`` for each (cosine_host.offline.batch.render_one), ``progress(done,
    total, note)`` in files, and returns the summary {"rendered": [reports], "skipped",
    "failed": [{"input", "output", "error"}], "ray" (when on Ray), else "workers" (the worker
    count that rendered them)}. A stop (KeyboardInterrupt,
    SIGTERM) propagates with a note on how to finish the batch and, as its ``summary``, the
    summary of the files finished so far plus "stopped" (what stopped it) and "not_rendered"
    ([{"input", "output"}] of the files not reported finished: one whose worker completed it
    as the stop came may exist complete, and --skip-existing skips it).
    """
    from cosine_host.files import write_json_atomic
    from cosine_host.offline import render as rendering
    if plan.single:
        if not plan.todo:
            return {}
        source, target = plan.jobs[0]
        return rendering.render_file(plan.cfg, source, target, progress=progress, **plan.options)
    state = {"files": 0, "seconds": 0.0}
    finished_outcomes = []

    def finished(outcome: dict) -> None:
        finished_outcomes.append(outcome)
        report = outcome.get("report")
        if report is not None and outcome["index"] in plan.reports:
            path = plan.reports[outcome["index"]]
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_json_atomic(path, report)
        if on_outcome is not None:
            on_outcome(outcome)
        state["files"] += 1
        state["seconds"] += (report or {}).get("seconds_audio", 0.0)
        if progress is not None:
            progress(state["files"], len(plan.todo), f"{state['seconds']:.1f} s of audio")

    ray_info = None
    try:
        if plan.ray_address is not None:
            from cosine_host.offline import cluster
            outcomes, ray_info = cluster.run(plan.cfg, plan.todo, plan.options, plan.ray_address,
                                             workers=plan.workers if plan.workers_given else None,
                                             on_outcome=finished)
        else:
            outcomes = batch.run(plan.cfg, plan.todo, plan.options, plan.workers,
                                 on_outcome=finished)
    except KeyboardInterrupt as e:
        from cosine_host.interrupts import describe
        stopped = describe(e)[0]
        e.note = ("outputs finished so far are complete; run again with --skip-existing to "
                  "render the rest")
        done = {o["index"] for o in finished_outcomes}
        e.summary = {**_summary(plan, sorted(finished_outcomes, key=lambda o: o["index"])),
                     "stopped": stopped,
                     "not_rendered": [{"input": source, "output": target}
                                      for index, source, target in plan.todo
                                      if index not in done]}
        raise
    summary = _summary(plan, outcomes)
    if ray_info:
        summary["ray"] = ray_info
    else:
        summary["workers"] = max(1, min(plan.workers, len(plan.todo)))
    return summary


def _summary(plan: RenderPlan, outcomes: list[dict]) -> dict:
    """A batch's summary of ``outcomes`` (see ``render_planned``)."""
    return {"rendered": [o["report"] for o in outcomes if "report" in o],
            "skipped": plan.skipped,
            "failed": [{"input": o["input"], "output": o["output"], "error": o["error"]}
                       for o in outcomes if "error" in o]}
