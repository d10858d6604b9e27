"""The CLI's tables and progress (cosine_host.cli.display, by rich)."""
from __future__ import annotations

import io

from cosine_host.cli.display import progress_display, table_text


def test_table_text_aligns_formats_and_never_cuts():
    rows = [{"preset": "sparse-threshold-with-a-long-name", "snr": 45.26, "kbps": None},
            {"preset": "default", "snr": 136.8, "kbps": 252.94}]
    text = table_text(rows, [("preset", "preset", ""), ("snr", "SNR dB", ".1f"),
                             ("kbps", "kbps", ".1f")])
    assert text.splitlines() == [
        "preset                              SNR dB    kbps",
        "---------------------------------- -------- ------",
        "sparse-threshold-with-a-long-name     45.3       -",
        "default                              136.8   252.9",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_silent_off_a_terminal_and_draws_on_one():
    with progress_display("render", io.StringIO()) as progress:
        assert progress is None
    terminal = _Terminal()
    with progress_display("render", terminal) as progress:
        for done in range(1, 5):
            progress(done, 4, "1.5 s of audio")
    drawn = terminal.getvalue()
    assert "render" in drawn and "4/4" in drawn and "1.5 s of audio" in drawn
