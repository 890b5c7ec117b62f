"""Reference simulators, geometries, observables and file formats. No machine learning here."""
