"""Engine versions as an axis: per-version environments built on demand from the package registry
(environments.py), the registry's released versions and what a version contains (registry.py), and a binary
search for the version where a cell starts or stops passing (bisect.py).

Nothing here runs unless a matrix names `versions:` on an engine (or `qcompat bisect` is called)."""
