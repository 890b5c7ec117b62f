"""The CaloGAN calorimeter: geometry, parametrised shower simulator, observables and HDF5 files."""
