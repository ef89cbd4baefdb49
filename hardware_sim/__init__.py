"""Simulated till devices on pseudo-terminals: a Shtrih-M fiscal printer and card readers.

Written from the device specs kept in the repository (docs/spec/shtrih-m.md,
docs/spec/card-readers.md) and
deliberately importing nothing of the rest of the project, so that a misreading of a spec on
either side shows up as a failing test instead of hiding in shared code.
"""
