"""Regenerate README's figure from the default bundled case: ``python docs/make_readme_figure.py``.

Runs ``stationary run`` on ``lq-wgan`` (full settings) and copies its density figure (grid
density, drift streamlines, SDE Monte Carlo contours) next to this script.
"""
import shutil
import sys
from pathlib import Path

from stationary.cli import main

out = Path(__file__).resolve().parent / "_lq-wgan-run"
code = main(["run", "lq-wgan", "--out", str(out)])
shutil.copy(out / "density_mc.png", Path(__file__).resolve().parent / "lq-wgan-density.png")
shutil.copy(out / "marginals.png", Path(__file__).resolve().parent / "lq-wgan-marginals.png")
shutil.rmtree(out)
sys.exit(code)
