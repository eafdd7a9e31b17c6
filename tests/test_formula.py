import numpy as np
import pytest
import sympy as sp

from stationary.formula import NUMPY_FUNCTIONS, FormulaError, parse_formula, sigmoid, softplus, stabilise_logs, symbol


def test_parses_whitelisted_formula():
    e = parse_formula("omega*x - c/2*x**2 + log_sigmoid(x) + abs(-x)", {"omega", "x"}, {"c": 2.0})
    x, w = symbol("x"), symbol("omega")
    val = float(e.subs({x: 0.5, w: 2.0}))
    assert val == pytest.approx(2 * 0.5 - 0.25 + np.log(1 / (1 + np.exp(-0.5))) + 0.5, rel=1e-14)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("__import__('os').system('true')", "only plain function calls"),
        ("__import__('os')", "unknown function '__import__'"),
        ("x.__class__", "attribute access"),
        ("x[0]", "Subscript"),
        ("y + 1", "unknown name 'y'"),
        ("open(x)", "unknown function 'open'"),
        ("exp(x, 2)", "exactly one positional argument"),
        ("exp(x=1)", "exactly one positional argument"),
        ("lambda: x", "Lambda"),
        ("x if x else 1", "IfExp"),
        ("'abc'", "unsupported literal"),
        ("x +", "syntax error"),
        ("2**10**10", "too large"),
        ("[x]", "List"),
        ("exp", "without a call"),
    ],
)
def test_rejects_everything_else(text, fragment):
    with pytest.raises(FormulaError) as info:
        parse_formula(text, {"x"}, where="case.toml: model.generator")
    assert "case.toml: model.generator" in str(info.value)
    assert fragment in str(info.value)


def test_custom_functions_have_exact_derivatives():
    t = symbol("t")
    assert sp.simplify(sp.diff(sigmoid(t), t) - sigmoid(t) * (1 - sigmoid(t))) == 0
    assert sp.diff(softplus(t), t) == sigmoid(t)


def test_stabilised_log_loss_is_finite_far_out():
    w = symbol("w")
    e = sp.log(sigmoid(w)) + sp.log(1 - sigmoid(w))
    f = sp.lambdify(w, sp.diff(stabilise_logs(e), w), modules=[NUMPY_FUNCTIONS, "numpy"])
    vals = f(np.array([-800.0, -40.0, 0.0, 40.0, 800.0]))
    assert np.all(np.isfinite(vals))
    assert vals[2] == pytest.approx(0.0, abs=1e-15)
