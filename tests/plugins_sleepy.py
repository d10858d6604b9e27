"""A test plugin that overloads the audio callback on purpose (tests/test_measure.py).

Referenced from a config as ``{type: "plugins_sleepy:Sleepy", sleep_ms: 20, above: 3.0}``
(tests/ on ``sys.path``).
"""
import time

import torch


class Sleepy(torch.nn.Module):
    """Passes coefficients through unchanged, but sleeps ``sleep_ms`` milliseconds in every call
    whose largest |coefficient| exceeds ``above``: a loud passage in the test signal then makes
    the engine miss its real-time budget in exactly those calls, and nowhere else (silence, the
    quiet measurement signal and the host's warm-up calls never trigger it).

    Args:
        sleep_ms: milliseconds to sleep per triggered call (> the budget, blocksize/samplerate,
            to force an xrun).
        above: trigger level on max |coefficient| (the coefficients' own scale).

    ``stats()`` gives ``sleeps``: triggered calls since the last reset.
    """

    def __init__(self, sleep_ms: float = 20.0, above: float = 1.0):
        super().__init__()
        self.sleep_ms = float(sleep_ms)
        self.above = float(above)
        self.sleeps = 0

    def reset(self) -> None:
        self.sleeps = 0

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        # A CPU test plugin: reading the peak here (a GPU sync elsewhere) is the point of it.
        if coeffs.numel() and float(coeffs.detach().abs().amax()) > self.above:
            self.sleeps += 1
            time.sleep(self.sleep_ms / 1000.0)
        return coeffs

    def stats(self) -> dict:
        return {"sleeps": self.sleeps}
