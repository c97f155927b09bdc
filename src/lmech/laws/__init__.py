"""Empirical laws fitted to measurements.

* :mod:`lmech.laws.power_law`: log-log least squares with Student-t intervals (width-scaling slopes).
* :mod:`lmech.laws.scaling`: the Chinchilla law L(N, D) = E + A/N^α + B/D^β fitted as Besiroglu et al.
  2024 do (Huber loss on log-losses, L-BFGS from 4,500 starts, bootstrap intervals), compute-optimal
  allocation and extrapolation with uncertainty bands.
* :mod:`lmech.laws.lbfgs`: the batched L-BFGS behind it (thousands of small problems in one batch).
"""
