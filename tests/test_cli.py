"""The job a user runs: every bundled case end to end with --quick, and bad case files."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from stationary.cases import CASES_DIR, bundled_cases, load_case
from stationary.cli import main

# What each bundled case must report (issue: exact cases agree, the unregularised case reports
# no invariant measure, the degenerate case warns about ellipticity).
EXPECTED = {
    "lq-wgan": {"exit": 0, "pass": ["grid vs exact Gaussian", "training vs exact discrete reference", "grid density vs SDE samples"]},
    "dirac-r1": {"exit": 0, "pass": ["grid vs exact Gaussian", "training vs exact discrete reference"], "warn": ["ellipticity"]},
    "dirac-unregularised": {"exit": 1, "fail": ["invariant measure"]},
    "scale-generator": {"exit": 0, "pass": ["stationary solve", "grid density vs SDE samples"]},
    "two-cluster": {"exit": 0, "pass": ["stationary solve", "grid density vs SDE samples"]},
    "vanilla": {"exit": 0, "pass": ["stationary solve", "grid density vs SDE samples"], "warn": ["ellipticity"]},
    "location-quadratic-critic-3d": {"exit": 0, "pass": ["stationary solve", "grid density vs SDE samples"]},
    "location-scale-4d": {"exit": 0, "pass": ["stationary solve", "grid density vs SDE samples"]},
}


def test_every_bundled_case_has_an_expectation():
    assert sorted(EXPECTED) == bundled_cases()
    assert len({load_case(n).model.dim for n in bundled_cases()}) == 3  # 2-, 3- and 4-parameter cases


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_case_runs_end_to_end_quick(name, tmp_path, capsys):
    out = tmp_path / name
    code = main(["run", name, "--quick", "--out", str(out)])
    assert code == EXPECTED[name]["exit"], capsys.readouterr()
    result = json.loads((out / "result.json").read_text())
    verdicts = {}
    for v in result["verdicts"]:
        verdicts.setdefault(v["check"], set()).add(v["verdict"])
    for check in EXPECTED[name].get("pass", []):
        assert verdicts.get(check) == {"PASS"}, (check, verdicts)
    for check in EXPECTED[name].get("fail", []):
        assert "FAIL" in verdicts.get(check, set()), (check, verdicts)
    for check in EXPECTED[name].get("warn", []):
        assert "WARN" in verdicts.get(check, set()), (check, verdicts)
    assert (out / "report.html").is_file()
    if EXPECTED[name]["exit"] == 0:
        st = result["stationary"]
        for key in ("mean", "covariance", "mass_at_boundary", "residual", "seconds"):
            assert key in st
        for proc in ("sga", "sde"):
            for key in ("mean", "covariance", "stderr_mean", "stderr_covariance"):
                assert result["montecarlo"][proc][key] is not None
        for ident in result.get("identities", {}).values():
            assert {"lhs", "rhs", "stderr"} <= set(ident)
        assert (out / "density.npz").is_file() and (out / "density_mc.png").is_file()
    else:
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no invariant probability measure" in err[0]


def _write(tmp_path, text, name="bad.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = (CASES_DIR / "lq-wgan.toml").read_text()


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda s: s.replace("[training]", "[training]\nmomentum = 0.9"), "training: unknown key 'momentum'"),
        (lambda s: s.replace("eta = 0.1", 'eta = "fast"'), "training.eta: must be a positive number"),
        (lambda s: s.replace("eta = 0.1", "eta = -0.1"), "training.eta: must be a positive number, got -0.1"),
        (lambda s: s.replace("batch = 4", "batch = -2"), "training.batch: must be a positive integer"),
        (lambda s: s.replace('generator = "theta + z"', 'generator = "theta + y"'), "model.generator: unknown name 'y'"),
        (lambda s: s.replace('generator = "theta + z"', 'generator = "__import__(\'os\').getcwd()"'), "model.generator"),
        (lambda s: s.replace('generator = "theta + z"', 'generator = "theta.real + z"'), "attribute access"),
        (lambda s: s.replace('x = { distribution = "normal", loc = 1.0, scale = 1.0, size = 256, seed = 2 }',
                             'x = { file = "missing.csv" }'), "data.x.file: data file"),
        (lambda s: s.replace('x = { distribution = "normal", loc = 1.0, scale = 1.0, size = 256, seed = 2 }',
                             'x = { values = [1.0, nan, 2.0] }'), "data.x.values: non-finite value"),
        (lambda s: s.replace("[model]", "[model]\nfoo = 1"), "model: unknown key 'foo'"),
        (lambda s: s.replace('update = "alt"', 'update = "adam"'), "training.update: must be one of"),
        (lambda s: s.replace("shape = [256, 256]", "shape = [256, 1]"), "grid.shape"),
    ],
)
def test_bad_case_files_give_one_line_errors_and_exit_code_2(tmp_path, capsys, edit, fragment):
    path = _write(tmp_path, edit(GOOD))
    code = main(["solve", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert str(path) in err[0] and fragment in err[0], err[0]


def test_negative_eta_on_the_command_line(capsys):
    assert main(["solve", "lq-wgan", "--eta", "-1"]) == 2
    assert "--eta: must be a positive number" in capsys.readouterr().err


def test_help_on_every_subcommand():
    for sub in ("run", "solve", "simulate", "check", "cases"):
        out = subprocess.run([sys.executable, "-m", "stationary.cli", sub, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage" in out.stdout


def test_cases_lists_every_bundled_case(capsys):
    assert main(["cases"]) == 0
    out = capsys.readouterr().out
    for name in bundled_cases():
        assert name in out


def test_check_reports_no_invariant_measure(tmp_path, capsys):
    assert main(["check", "dirac-unregularised", "--out", str(tmp_path)]) == 1
    assert "no invariant probability measure" in capsys.readouterr().out
    assert main(["check", "lq-wgan", "--out", str(tmp_path)]) == 0
