"""Cosmic-web reference data: linear theory, a particle-mesh N-body code, statistics and HDF5 files.

Modules: :mod:`.cosmology` (background, growth, linear and halofit P(k)), :mod:`.nbody`
(2LPT + FastPM particle-mesh in torch), :mod:`.observables` (power spectra, pixel PDF, peaks,
Minkowski functionals), :mod:`.io` (HDF5 layout) and :mod:`.simulate` (slices over a Latin
hypercube of parameters).
"""
