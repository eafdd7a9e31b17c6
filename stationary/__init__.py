"""stationary: invariant measures of SDE approximations of low-dimensional GAN training.

Pipeline: model -> sde -> grid -> operator -> solve -> check -> report.
"""
from .data import DataError, load_data
from .formula import FormulaError, parse_formula
from .grid import Grid, GridError
from .model import GAN, GradientMoments
from .operator import FokkerPlanckOperator, assemble, SCHEMES
from .results import ErrorEstimate, StationaryResult
from .spectral import SpectralGap, relaxation_time
from .sde import SDE, SDEError, gan_sde
from .solve import METHODS, solve_stationary, stationary_density
from .exact import linear_gaussian_reference
from .simulate import MonteCarloResult, simulate_sde, simulate_training
from .discrete import discrete_reference, euler_maruyama_reference
from .compare import Comparison, compare
from .identities import IDENTITIES, IdentityError, IdentityResult, evaluate_identity, evaluate_identities, generator_action, identity_convergence, monte_carlo_identities
from .schedule import FDRSchedule, ScheduledTrainingResult, simulate_scheduled_training

__version__ = "0.1.0"

__all__ = [
    "DataError", "load_data", "FormulaError", "parse_formula", "Grid", "GridError", "GAN",
    "GradientMoments", "FokkerPlanckOperator", "assemble", "SCHEMES", "StationaryResult", "ErrorEstimate",
    "SpectralGap", "relaxation_time", "SDE",
    "SDEError", "gan_sde", "METHODS", "solve_stationary", "stationary_density", "linear_gaussian_reference",
    "MonteCarloResult", "simulate_training", "simulate_sde", "discrete_reference", "euler_maruyama_reference",
    "Comparison", "compare",
    "IDENTITIES", "IdentityError", "IdentityResult", "evaluate_identity", "evaluate_identities", "generator_action",
    "identity_convergence", "monte_carlo_identities", "FDRSchedule", "ScheduledTrainingResult",
    "simulate_scheduled_training",
]
