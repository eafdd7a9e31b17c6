import numpy as np
import pytest

from stationary import GAN


def lq_model(c=1.0, lam_theta=0.1, lam_omega=0.1, n=256, seed=1):
    """Linear-quadratic WGAN of MATH.md section 7."""
    return GAN(
        ["theta"],
        ["omega"],
        "theta + z",
        "omega*x - c/2*x**2",
        loss="wgan",
        regularizer=f"{lam_theta / 2}*theta**2 - {lam_omega / 2}*omega**2",
        constants={"c": c},
        z={"distribution": "normal", "size": n, "seed": seed},
        x={"distribution": "normal", "loc": 1.0, "scale": 1.0, "size": n, "seed": seed + 1},
        name="lq-wgan",
    )


@pytest.fixture(scope="session")
def lq():
    return lq_model()


@pytest.fixture
def rng():
    return np.random.default_rng(20261204)
