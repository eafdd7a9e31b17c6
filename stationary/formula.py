"""Safe formula parsing: a whitelist walk over Python's AST into sympy.

Case files are data.  A formula such as ``"omega*x - c/2*x**2"`` is parsed with
:func:`ast.parse` (which only parses, it never runs anything) and every node of the
tree is checked against a short whitelist before it is turned into a sympy
expression node by node.  Nothing is ever passed to ``eval``, ``exec``,
``sympify`` or ``parse_expr``.

Allowed: numbers, declared names, ``+ - * / **``, unary ``-``/``+``, parentheses
and calls of the functions in :data:`FUNCTIONS` with positional arguments.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping

import numpy as np
import sympy as sp
from scipy import special

__all__ = [
    "FormulaError",
    "parse_formula",
    "symbol",
    "sigmoid",
    "softplus",
    "FUNCTIONS",
    "NUMPY_FUNCTIONS",
    "stabilise_logs",
]

MAX_FORMULA_LENGTH = 2000
MAX_INTEGER_EXPONENT = 64


class FormulaError(ValueError):
    """A formula uses something outside the whitelist (message names the token)."""


class sigmoid(sp.Function):
    r"""Logistic function :math:`\sigma(t) = 1/(1+e^{-t})`, with :math:`\sigma' = \sigma(1-\sigma)`.

    Kept as its own sympy function so that derivatives stay compact and the
    compiled code can call the overflow-free :func:`scipy.special.expit`.
    """

    nargs = 1

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sp.Rational(1, 2)
        return None

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + sp.exp(-arg))

    def _eval_evalf(self, prec):
        return (1 / (1 + sp.exp(-self.args[0])))._eval_evalf(prec)


class softplus(sp.Function):
    r"""Softplus :math:`\log(1+e^{t})`, with derivative :math:`\sigma(t)`; compiled as ``logaddexp(0, t)``."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sp.log(2)
        return None

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return sp.log(1 + sp.exp(arg))

    def _eval_evalf(self, prec):
        return sp.log(1 + sp.exp(self.args[0]))._eval_evalf(prec)


def _log_sigmoid(t):
    return -softplus(-t)


#: Functions a formula may call, by the name used in case files.
FUNCTIONS = {
    "exp": sp.exp,
    "log": sp.log,
    "tanh": sp.tanh,
    "sigmoid": sigmoid,
    "softplus": softplus,
    "log_sigmoid": _log_sigmoid,
    "sqrt": sp.sqrt,
    "sin": sp.sin,
    "cos": sp.cos,
    "abs": sp.Abs,
}

#: Numerically stable numpy implementations handed to :func:`sympy.lambdify`.
NUMPY_FUNCTIONS = {
    "sigmoid": special.expit,
    "softplus": lambda t: np.logaddexp(0.0, t),
}

_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}
_UNARY = {ast.USub: lambda a: -a, ast.UAdd: lambda a: a}


def symbol(name: str) -> sp.Symbol:
    """The one real sympy symbol used for ``name`` everywhere in the package."""
    return sp.Symbol(name, real=True)


def _describe(node: ast.AST, text: str) -> str:
    segment = ast.get_source_segment(text, node)
    where = f" at column {node.col_offset + 1}" if hasattr(node, "col_offset") else ""
    return f"{segment!r}{where}" if segment else f"{type(node).__name__}{where}"


def parse_formula(
    text: str,
    names: Iterable[str],
    constants: Mapping[str, float] | None = None,
    *,
    where: str = "formula",
) -> sp.Expr:
    """Parse ``text`` into a sympy expression using only whitelisted constructs.

    Parameters
    ----------
    text : str
        The formula, e.g. ``"log(sigmoid(omega*x))"``.
    names : iterable of str
        Variable names the formula may use; each becomes :func:`symbol` (name).
    constants : mapping, optional
        Named numbers substituted as exact values.
    where : str
        Context for error messages, e.g. ``"cases/lq.toml: model.generator"``.

    Raises
    ------
    FormulaError
        For syntax errors, unknown names, attribute access, subscripts, keyword
        arguments, unknown functions, or anything else outside the whitelist.
    """
    if not isinstance(text, str):
        raise FormulaError(f"{where}: expected a formula string, got {type(text).__name__}")
    if len(text) > MAX_FORMULA_LENGTH:
        raise FormulaError(f"{where}: formula longer than {MAX_FORMULA_LENGTH} characters")
    names = set(names)
    constants = dict(constants or {})
    clash = (names | set(constants)) & set(FUNCTIONS)
    if clash:
        raise FormulaError(f"{where}: names {sorted(clash)} clash with function names")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"{where}: syntax error in {text!r}: {exc.msg}") from None
    text = text.strip()

    def build(node: ast.AST) -> sp.Expr:
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise FormulaError(f"{where}: unsupported literal {_describe(node, text)}")
            if not np.isfinite(value):
                raise FormulaError(f"{where}: non-finite literal {_describe(node, text)}")
            return sp.Integer(value) if isinstance(value, int) else sp.Float(value)
        if isinstance(node, ast.Name):
            if node.id in names:
                return symbol(node.id)
            if node.id in constants:
                value = constants[node.id]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                    raise FormulaError(f"{where}: constant {node.id!r} must be a finite number")
                return sp.Float(value) if isinstance(value, float) else sp.Integer(value)
            if node.id in FUNCTIONS:
                raise FormulaError(f"{where}: function {node.id!r} used without a call")
            allowed = sorted(names | set(constants))
            raise FormulaError(f"{where}: unknown name {node.id!r}{_at(node)}; allowed names: {allowed}")
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = build(node.left), build(node.right)
            if isinstance(node.op, ast.Pow) and right.is_number:
                if right.is_integer and abs(int(right)) > MAX_INTEGER_EXPONENT:
                    raise FormulaError(f"{where}: exponent {right} too large in {_describe(node, text)}")
                if left.is_number and (abs(float(right)) > MAX_INTEGER_EXPONENT):
                    raise FormulaError(f"{where}: exponent too large in {_describe(node, text)}")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](build(node.operand))
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise FormulaError(f"{where}: only plain function calls are allowed, not {_describe(node.func, text)}")
            if node.func.id not in FUNCTIONS:
                raise FormulaError(
                    f"{where}: unknown function {node.func.id!r}{_at(node)}; allowed: {sorted(FUNCTIONS)}"
                )
            if node.keywords or len(node.args) != 1:
                raise FormulaError(f"{where}: {node.func.id} takes exactly one positional argument")
            return FUNCTIONS[node.func.id](build(node.args[0]))
        if isinstance(node, ast.Attribute):
            raise FormulaError(f"{where}: attribute access {_describe(node, text)} is not allowed")
        raise FormulaError(f"{where}: {type(node).__name__} {_describe(node, text)} is not allowed in a formula")

    expr = build(tree)
    if isinstance(expr, (sp.Expr,)) and expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise FormulaError(f"{where}: formula {text!r} is not finite")
    return expr


def _at(node: ast.AST) -> str:
    return f" at column {node.col_offset + 1}" if hasattr(node, "col_offset") else ""


_W = sp.Wild("w")


def stabilise_logs(expr: sp.Expr) -> sp.Expr:
    r"""Rewrite ``log(sigmoid(t))`` as ``-softplus(-t)`` and ``log(1 - sigmoid(t))`` as ``-softplus(t)``.

    Mathematically the identity; numerically it removes the ``log(0)`` and ``0/0``
    that the log-loss and its derivatives hit once :math:`|t| \gtrsim 37`.
    """
    expr = expr.replace(sp.log(sigmoid(_W)), lambda w: -softplus(-w))
    expr = expr.replace(sp.log(1 - sigmoid(_W)), lambda w: -softplus(w))
    return expr
