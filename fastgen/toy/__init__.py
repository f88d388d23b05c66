"""Toy densities for the flow models: small 2-D problems with exact log-likelihoods and plots.

``fastgen toy two-moons`` (see :mod:`fastgen.toy.cli`) runs :func:`train_two_moons`.
"""

from fastgen.toy.two_moons import gaussian_baseline, make_two_moons, mean_log_likelihood, train_two_moons

__all__ = ["gaussian_baseline", "make_two_moons", "mean_log_likelihood", "train_two_moons"]
