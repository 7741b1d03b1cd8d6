"""The report's line plots draw the values the logs hold, also when diagnostics ran only
every few steps (the other steps log null)."""

import numpy as np

from finetune.experiment import figures


def _drawn(monkeypatch, draw, *args):
    captured = {}

    def keep(fig, path):
        captured["fig"] = fig
        return path

    monkeypatch.setattr(figures, "_save", keep)
    draw(*args)
    return [line.get_xydata() for ax in captured["fig"].axes for line in ax.get_lines()]


def test_sparse_diagnostics_are_drawn_at_the_steps_that_logged_them(monkeypatch, tmp_path):
    steps = [1, 2, 3, 4, 5, 6, 7, 8]
    every_4th = [None, None, None, 2.0, None, None, None, 1.5]
    curves = {"standard": {"steps": steps, "phi": every_4th, "phi_p": every_4th,
                           "loss": {"en": [1.0] * 8},
                           "conflict": {"model.layers.0": every_4th}}}
    for draw in (figures.stationarity, figures.conflict):
        lines = _drawn(monkeypatch, draw, curves, tmp_path / "x.png")
        assert lines, draw.__name__
        for xy in lines:
            assert np.array_equal(xy, [[4.0, 2.0], [8.0, 1.5]]), draw.__name__
