"""`train`: fit the transform (and a learned quantizer) to audio files."""
from __future__ import annotations

import click

from cosine_host.cli.base import (config_options, example, handles_errors, load,
                                  overwrite_option)
from cosine_host.cli.display import progress_display


@click.command(epilog=example("python run.py train speech.wav --set "
                              "'processors=[{type: learned_quantize}]' --objective rd "
                              "--rate-weight 0.01 --steps 500 --out model.pt"))
@config_options
@click.argument("audio", nargs=-1, required=True)
@click.option("--steps", type=click.IntRange(min=1), default=500, show_default=True,
              help="Optimiser steps.")
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Segments per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-2,
              show_default=True, help="Learning rate of the gains (frequencies get their own).")
@click.option("--out", "out_path", default="model.pt", show_default=True, metavar="FILE",
              help="Checkpoint to write (use it with --set model.checkpoint=PATH).")
@click.option("--val", "val_path", default=None, metavar="FILE",
              help="Audio file for validation SNR (default: a held-out part of AUDIO).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the segment sampler and the held-out split.")
@click.option("--log", "log_path", default=None, metavar="FILE",
              help="Write the loss log as CSV, one line per step as training goes.")
@click.option("--plot", "plot_path", default=None, metavar="FILE",
              help="Write a PNG of the loss curve (needs matplotlib).")
@click.option("--save-every", type=click.IntRange(min=1), default=None, metavar="STEPS",
              help="Also write the checkpoint every STEPS steps (the best one so far).")
@click.option("--objective", type=click.Choice(["mse", "rd"]), default="mse", show_default=True,
              help="mse: reconstruction error; rd: error + rate-weight x bits, training a "
                   "learned_quantize's steps and entropy model with the transform.")
@click.option("--rate-weight", type=float, default=0.0, show_default=True, metavar="LAMBDA",
              help="rd: weight of the rate, per bit per sample (larger: fewer bits).")
@click.option("--stft-weight", type=float, default=0.0, show_default=True,
              help="rd: weight of a multi-resolution STFT term in the distortion.")
@click.option("--relaxation", type=click.Choice(["ste", "noise"]), default="ste",
              show_default=True, help="rd: straight-through rounding or additive uniform noise.")
@overwrite_option
@handles_errors
def train(config_path, overrides, audio, steps, batch, lr, out_path, val_path, seed, log_path,
          plot_path, save_every, objective, rate_weight, stft_weight, relaxation, overwrite):
    """Fit the transform's gains and frequencies to AUDIO files through the config's processors."""
    from cosine_host.train.fit import train_files
    cfg = load(config_path, overrides)
    with progress_display("train") as progress:
        result = train_files(cfg, list(audio), steps=steps, batch=batch, lr=lr,
                             out_path=out_path, val_path=val_path, seed=seed, log_path=log_path,
                             plot_path=plot_path, save_every=save_every, overwrite=overwrite,
                             progress=progress, objective=objective, rate_weight=rate_weight,
                             stft_weight=stft_weight, relaxation=relaxation)
    click.echo(f"validation SNR: {result['snr_before_db']:.2f} dB before, "
               f"{result['snr_after_db']:.2f} dB after ({result['steps']} steps, "
               f"{result['seconds_wall']:.1f} s)")
    if result["kbps_before"] is not None:
        click.echo(f"validation bitrate (kbps_entropy): {result['kbps_before']:.1f} kbps before, "
                   f"{result['kbps_after']:.1f} kbps after; validation loss "
                   f"{result['loss_before']:.4g} -> {result['loss_after']:.4g}")
    if result.get("kept") == "start":
        click.echo(f"training did not improve the validation SNR "
                   f"({result['snr_trained_db']:.2f} dB after the last step); the checkpoint "
                   f"keeps the starting parameters")
    if result.get("freq_shift_bins") is not None:
        click.echo(f"frequencies moved {result['freq_shift_bins']:.3f} bins on average")
    click.echo(f"checkpoint: {result['checkpoint']}  "
               f"(use --set model.checkpoint={result['checkpoint']})")
