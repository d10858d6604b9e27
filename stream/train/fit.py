"""`train`: fit the config's transform to audio files, then write a checkpoint and logs.

Reads the files with soundfile (each channel is a separate example; the file's own samplerate, no
resampling), holds out the last 10 % of each file for validation unless ``val_path`` is given,
trains with cosine_host.models.training (the engine's chain with differentiable ops) and measures
the validation SNR through the real streaming engine (cosine_host.engine.engine.Engine.render)
before and after. ``model.checkpoint`` in the config is a starting point: training continues from
it.

With ``objective="rd"`` the chain's learned quantizer trains with the transform for rate and quality
(cosine_host.models.training); validation then also measures the bitrate of the engine's symbols
(the learned quantizer's per-band entropy, ``kbps_entropy``, as `evaluate` reports it) and keeps the
parameters with the lowest validation loss (error / signal energy + stft_weight x MR-STFT +
rate_weight x bits per sample); the checkpoint stores the learned steps and entropy model.

Here: the checks before any work and the run itself (train_files: the model, the steps, model
selection, checkpoints, Ctrl-C). The audio, its split and the validation measure are in
stream/train/data.py; the progress, the loss log and its plot in stream/train/log.py.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import time

from cosine_host.models import read_checkpoint, save_checkpoint
from cosine_host.models.checkpoint import CheckpointError
from cosine_host.models.processors.learned_quantize import RELAXATIONS
from cosine_host.models.training import (FREQ_LR_RATIO, OBJECTIVES, SegmentSampler, TrainingError,
                             frequency_offsets, learned_processors, train)
from cosine_host.engine.build import build_model, build_processors, resolve_device
from cosine_host.errors import UserError
from cosine_host.outputs import check_outputs, protected_paths
from cosine_host.train.data import (HELD_OUT_FRACTION, check_rates, load_audio, split,
                                    validate)
from cosine_host.plotting import check_matplotlib
from cosine_host.train.log import LiveLog, plot_log, step_reporter
from cosine_host.engine.windows import window_pair

PERFECT_SNR_DB = 100.0
"""A chain that already reconstructs the validation audio this well has nothing to learn: an
M = N transform without processors reconstructs at about 130 dB in float32 (tied or pinv
decoder), 300 dB in float64."""


def _check_outputs(cfg, audio_paths, val_path, out_path, log_path, plot_path,
                   overwrite: bool) -> None:
    """Refuse, before any work, outputs that break cosine_host.outputs' rule (an existing file
    without ``overwrite``; the config, the checkpoint in use or an audio file even with it; a
    missing folder; two outputs on one file), an existing --out that is not a checkpoint, or a
    plot without matplotlib."""
    inputs = [("audio file", p) for p in audio_paths]
    if val_path:
        inputs.append(("--val file", val_path))
    check_outputs([("--out", out_path), ("--log", log_path), ("--plot", plot_path)],
                  protected_paths(cfg, inputs), overwrite)
    if os.path.exists(out_path):
        try:
            read_checkpoint(out_path)
        except CheckpointError:
            raise UserError(f"--out {out_path!r} exists and is not a cosine-host checkpoint; "
                            f"refusing to overwrite it: choose another --out") from None
    if plot_path:
        check_matplotlib()          # before hours of training


def train_files(cfg, audio_paths, steps: int = 500, batch: int = 32, lr: float = 1e-2,
                out_path: str = "model.pt", val_path: str | None = None, seed: int = 0,
                log_path: str | None = None, plot_path: str | None = None,
                save_every: int | None = None, overwrite: bool = False,
                progress=None, objective: str = "mse", rate_weight: float = 0.0,
                stft_weight: float = 0.0, relaxation: str = "ste") -> dict:
    """Train the config's model on audio files and write the checkpoint (and log, plot).

    Args:
        cfg: cosine_host.config.schema.Config: frame size/hop/window, model (init, decoder, dtype,
            device, an optional starting checkpoint) and the processors trained through.
        audio_paths: audio files, each at least one frame (frame.size samples) long, every
            sample finite.
        steps: optimiser steps. batch: segments per step, each
            cosine_host.models.training.segment_samples(N, H) samples long. lr: the gains' Adam step
            size; the frequencies get lr * cosine_host.models.training.FREQ_LR_RATIO, in bins of
            pi/N.
        out_path: checkpoint to write; an existing file there must be a checkpoint and is only
            replaced with ``overwrite``; the checkpoint in use (model.checkpoint) never is.
        val_path: validation audio; None holds out the last 10 % of every training file.
        seed: seeds the segment draws: the same seed and inputs give an identical checkpoint.
        log_path: CSV of the loss per step (``LOG_COLUMNS``), written as training goes, one
            flushed line per step (LiveLog). plot_path: PNG of the loss, at the end.
        save_every: every this many steps (default None: never), measure the validation SNR
            and write the best checkpoint so far to ``out_path`` (atomically).
        overwrite: replace existing outputs (cosine_host.outputs.check_outputs).
        progress: progress(done_steps, total_steps) or None; called after every step, with
            ``note=`` "loss ... (... dB)" when it takes that keyword.
        objective: "mse" (default) or "rd" (rate and quality; the config's processors must
            hold a learned_quantize). rate_weight: lambda >= 0 per bit per sample (rd).
            stft_weight: weight >= 0 of the MR-STFT term in the distortion (rd).
            relaxation: "ste" (default) or "noise", how the learned quantizer rounds in
            training (rd).
    Returns:
        snr_before_db, snr_after_db (validation SNR through the engine of the starting and of
        the written model), snr_trained_db (of the model after the last step), kept
        ("trained", or "start" when training made the validation SNR worse and the checkpoint
        keeps the starting parameters), kept_step (the step whose parameters were written: 0 =
        the start, else the last step or a --save-every step that validated better), steps,
        seconds_wall (the whole call), checkpoint, log, plot, device, lr, lr_freq, batch, seed,
        final_loss (the last step's), kbps_before, kbps_after (the validation bitrate through
        the engine, kbps_entropy; None without a quantizer), loss_before, loss_after (the
        validation loss, ``validate``), objective, rate_weight, freq_shift_bins (mean
        |w_after - w_before| in bins of pi/N), files, validation, train_samples,
        validation_samples (samples of all channels)
        and model (the written models.LearnedCosine, in eval mode on ``device``).
    Raises:
        UserError: bad input (no or unreadable files, files shorter than a frame, NaN or
            infinite samples, a peak beyond cosine_host.train.data.MAX_PEAK, files (and
            --val) of different sample rates, --objective rd with rate weight 0, silent
            audio, outputs that exist or would replace inputs), nothing
            to learn (the chain already reconstructs perfectly, or no gradient passes the
            processors), divergence.
        KeyboardInterrupt (Ctrl-C, or cosine_host.interrupts.Terminated for SIGTERM/SIGHUP) during
            the steps: the best checkpoint so far (as at the end, of the steps finished) is
            written to ``out_path`` first, and the exception's ``note`` says so.
    """
    started = time.monotonic()
    audio_paths = list(audio_paths)
    if not audio_paths:
        raise UserError("no audio files given; name one or more, e.g. run.py train speech.wav")
    _check_objective(objective, rate_weight, stft_weight, relaxation)
    _check_outputs(cfg, audio_paths, val_path, out_path, log_path, plot_path, overwrite)
    n, hop = cfg.frame.size, cfg.frame.hop
    device = resolve_device(cfg.model.device)
    model = build_model(cfg)
    chain = build_processors(cfg)
    learned = learned_processors(chain)
    if objective == "rd" and not learned:
        raise UserError("--objective rd trains a learned quantizer with the transform, and the "
                        "config has none: add it, e.g. --set 'processors=[{type: "
                        "learned_quantize}]'")
    if objective == "rd" and rate_weight == 0:
        raise UserError("--objective rd with --rate-weight 0 has no rate term: nothing holds "
                        "the bitrate down while the quantizer's steps learn; give --rate-weight "
                        "LAMBDA > 0 (e.g. 0.01; larger: fewer bits), or use --objective mse")
    loaded = load_audio(audio_paths, n)
    val_loaded = load_audio([val_path], n) if val_path else None
    check_rates(loaded, val_loaded)
    train_signals, validation = split(loaded, val_loaded)
    # the first file's rate for processor statistics (bitrate)
    chain.prepare(loaded[0][2], hop, model.m)

    def measure() -> dict:
        return validate(cfg, model, chain, validation, device, objective, rate_weight,
                        stft_weight)

    before = measure()
    snr_before = before["snr_db"]
    if objective == "mse" and snr_before >= PERFECT_SNR_DB:
        kinds = ", ".join(p["type"] for p in cfg.processors) or "none"
        if cfg.model.init == "mdct":
            # fewer coefficients is no option here: the MDCT reconstructs at M = N/2 only
            raise UserError(
                f"nothing to learn: the mdct init already reconstructs the validation audio at "
                f"{snr_before:.0f} dB SNR (processors: {kinds}); its per-coefficient gains "
                f"learn through processors, e.g. --set 'processors=[{{type: quantize, bits: 6}}]'")
        raise UserError(
            f"nothing to learn: the config already reconstructs the validation audio at "
            f"{snr_before:.0f} dB SNR (N = {n}, M = {model.m}, processors: {kinds}); train with "
            f"fewer coefficients, e.g. --set model.coefficients={max(1, model.m // 2)}, or "
            f"through processors, e.g. --set 'processors=[{{type: quantize, bits: 4}}]'")
    try:
        sampler = SegmentSampler(train_signals, n, hop, dtype=model.dtype,
                                 device=device)
    except TrainingError as e:
        raise UserError(str(e)) from None
    wa, ws = window_pair(cfg.frame.window, n, hop, cfg.frame.synthesis_samples,
                         cfg.frame.kbd_alpha)
    offsets_before = frequency_offsets(model)
    on_step = step_reporter(progress, steps)

    files = [os.path.abspath(p) for p in audio_paths]
    held_out = (os.path.abspath(val_path) if val_path
                else f"last {HELD_OUT_FRACTION:.0%} of each file")
    lr_freq = lr * FREQ_LR_RATIO

    def snapshot() -> dict:
        return {"model": _clone(model.state_dict()),
                "processors": [_clone(q.state_dict()) for q in learned]}

    def restore(state: dict) -> None:
        model.load_state_dict(state["model"])
        for q, own in zip(learned, state["processors"]):
            q.load_state_dict(own)

    # the best validated parameters so far (the start, then --save-every steps; lowest
    # validation loss) and the parameters after the last finished step
    best = {"step": 0, "snr": snr_before, "loss": before["loss"], "kbps": before["kbps"],
            "state": snapshot()}
    last = {"step": 0, "state": best["state"]}
    rows: list[dict] = []

    def write_checkpoint(state: dict, step: int, snr_after: float, snr_trained: float,
                         interrupted: str | None = None) -> None:
        kept = "start" if step == 0 else "trained"
        source, procs = (model, learned) if state is None else _with_state(model, learned, state)
        with _writing("--out", out_path):
            # no wall time in it: the same seed and inputs give a byte-identical checkpoint
            save_checkpoint(source, out_path, processors=procs, extra={
                "steps": steps, "steps_done": len(rows), "kept_step": step, "seed": seed,
                "lr": lr, "lr_freq": lr_freq, "batch": batch, "snr_before_db": snr_before,
                "snr_after_db": snr_after, "snr_trained_db": snr_trained, "kept": kept,
                "freq_shift_bins": _shift(source, offsets_before), "files": files,
                "validation": held_out, "hop": hop, "window": cfg.frame.window,
                "processors": [dict(p) for p in cfg.processors], "interrupted": interrupted,
                "objective": objective, "rate_weight": rate_weight, "stft_weight": stft_weight,
                "relaxation": relaxation if objective == "rd" else None,
                "kbps_before": before["kbps"], "kbps_after": best["kbps"],
                "loss_before": before["loss"], "loss_after": best["loss"]})

    def periodic_save(step: int) -> None:
        now = measure()
        model.train()          # the engine put it in eval mode
        if now["loss"] <= best["loss"]:
            best.update(step=step, snr=now["snr_db"], loss=now["loss"], kbps=now["kbps"],
                        state=last["state"])
        write_checkpoint(best["state"], best["step"], best["snr"], now["snr_db"])

    log = None
    if log_path:
        with _writing("--log", log_path):
            log = LiveLog(log_path)

    def log_step(row: dict) -> None:
        row["seconds"] = round(time.monotonic() - started, 3)
        state = snapshot()
        if log is not None:
            with _writing("--log", log_path):
                log.write(row)
        rows.append(row)
        last.update(step=row["step"], state=state)
        if save_every and row["step"] % save_every == 0 and row["step"] < steps:
            periodic_save(row["step"])
        if on_step is not None:
            on_step(row)

    interrupted = None
    try:
        train(model, chain, sampler, window_analysis=wa, window_synthesis=ws, hop=hop,
              steps=steps, batch=batch, lr=lr, seed=seed, on_step=log_step,
              objective=objective, rate_weight=rate_weight, stft_weight=stft_weight,
              relaxation=relaxation)
    except KeyboardInterrupt as e:
        # parameters mid-step may be half updated: go back to the last finished step
        interrupted = e
        restore(last["state"])
        model.eval()
    except TrainingError as e:
        raise UserError(str(e)) from None
    finally:
        if log is not None:
            log.close()

    trained = measure() if last["step"] else before
    snr_trained = trained["snr_db"]
    # Model selection on the validation audio: where training cannot gain (e.g. M = N through a
    # quantizer, +-0.04 dB of noise) it must not leave a worse model than it started from.
    if trained["loss"] <= best["loss"]:
        best.update(step=last["step"], snr=snr_trained, loss=trained["loss"],
                    kbps=trained["kbps"], state=last["state"])
    restore(best["state"])
    snr_after = best["snr"]
    kept = "start" if best["step"] == 0 else "trained"
    shift = _shift(model, offsets_before)
    if interrupted is not None:
        from cosine_host.interrupts import describe
        write_checkpoint(None, best["step"], snr_after, snr_trained,
                         interrupted=describe(interrupted)[0])
        interrupted.note = (f"wrote the best checkpoint so far to {str(out_path)!r} (step "
                            f"{best['step']} of {steps}, validation SNR {snr_before:.2f} -> "
                            f"{snr_after:.2f} dB)")
        raise interrupted
    write_checkpoint(None, best["step"], snr_after, snr_trained)
    if plot_path:
        with _writing("--plot", plot_path):
            plot_log(plot_path, rows, f"N={n} M={model.m} H={hop} {cfg.model.decoder} decoder: "
                                      f"validation SNR {snr_before:.2f} -> {snr_after:.2f} dB")
    return {"snr_before_db": snr_before, "snr_after_db": snr_after,
            "snr_trained_db": snr_trained, "kept": kept, "kept_step": best["step"],
            "steps": steps, "seconds_wall": time.monotonic() - started,
            "checkpoint": str(out_path), "log": log_path, "plot": plot_path,
            "device": str(device), "lr": lr, "lr_freq": rows[-1]["lr_freq"], "batch": batch,
            "seed": seed, "final_loss": rows[-1]["loss"], "objective": objective,
            "rate_weight": rate_weight, "kbps_before": before["kbps"], "kbps_after": best["kbps"],
            "loss_before": before["loss"], "loss_after": best["loss"],
            "freq_shift_bins": shift, "files": files, "validation": held_out,
            "train_samples": sum(int(s.numel()) for s in train_signals),
            "validation_samples": sum(int(d.size) for d, _ in validation), "model": model}


def _with_state(model, learned, state: dict):
    """Copies of ``model`` and the ``learned`` processors holding ``state`` (a snapshot of
    both); the originals are left as they are."""
    other = copy.deepcopy(model)
    other.load_state_dict(state["model"])
    procs = []
    for q, own in zip(learned, state["processors"]):
        twin = type(q)(scale=q.scale)     # not a deepcopy: q may hold training's graph
        twin.load_state(own)
        procs.append(twin)
    return other, procs


def _clone(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


def _check_objective(objective: str, rate_weight: float, stft_weight: float,
                     relaxation: str) -> None:
    if objective not in OBJECTIVES:
        raise UserError(f"--objective {objective!r}: allowed: {' | '.join(OBJECTIVES)}")
    if relaxation not in RELAXATIONS:
        raise UserError(f"--relaxation {relaxation!r}: allowed: {' | '.join(RELAXATIONS)}")
    for flag, value in (("--rate-weight", rate_weight), ("--stft-weight", stft_weight)):
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"{flag} {value!r}: must be a finite number >= 0")
    if objective == "mse" and (rate_weight or stft_weight):
        raise UserError("--rate-weight and --stft-weight belong to --objective rd; add "
                        "--objective rd or leave them out")


def _shift(model, offsets_before) -> float:
    """Mean |w - w at the start| in bins of pi/N."""
    return float((frequency_offsets(model) - offsets_before).abs().mean())


@contextlib.contextmanager
def _writing(flag: str, path: str):
    """Turn a failed write into one line naming the option and the reason."""
    try:
        yield
    except OSError as e:
        raise UserError(f"cannot write {flag} {path!r}: {e.strerror or e}; choose a path in an "
                        f"existing, writable folder") from None
