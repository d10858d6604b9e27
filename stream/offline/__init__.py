"""Offline rendering: one file (``render``), containers and formats, integer PCM, resampling,
the read-back of what was written, which files a command renders (``jobs``), and batches in
worker processes (``batch``) or on Ray (``cluster``). Nothing here imports sounddevice."""
