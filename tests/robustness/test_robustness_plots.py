"""Figure titles of the robustness plots stay inside narrow (one-panel) figures."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rssnn_deploy.robustness.plots import _suptitle  # noqa: E402

LONG = ("accuracy vs attack budget, strongest gradient source per point (float: surrogate "
        "gradients, chip: straight-through; Square: queries only); dotted: default ε")


def test_a_long_title_on_a_one_panel_figure_is_wrapped_inside_it():
    fig, _ = plt.subplots(1, 1, figsize=(3.8, 2.9))
    try:
        _suptitle(fig, LONG)
        fig.canvas.draw()
        title = fig._suptitle
        box = title.get_window_extent(fig.canvas.get_renderer())
        assert title.get_text().count("\n") >= 2
        assert title.get_text().replace("\n", " ") == LONG
        assert box.x0 >= 0 and box.x1 <= fig.bbox.x1
    finally:
        plt.close(fig)


def test_a_title_that_fits_stays_on_one_line():
    fig, _ = plt.subplots(1, 4, figsize=(13.6, 2.9))
    try:
        _suptitle(fig, "accuracy vs input noise")
        assert fig._suptitle.get_text() == "accuracy vs input noise"
    finally:
        plt.close(fig)
