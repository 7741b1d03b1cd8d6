"""Modules that draw figures leave the importer's matplotlib backend alone.

A module that called ``matplotlib.use("Agg")`` on import silently switched a notebook's
inline backend, so its figures stopped showing."""

import subprocess
import sys


def test_importing_the_figure_modules_keeps_the_backend():
    code = (
        "import matplotlib; matplotlib.use('pdf')\n"
        "import eval.reporting.plots, finetune.experiment.figures, simulate.compare\n"
        "print(matplotlib.get_backend())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "pdf"
