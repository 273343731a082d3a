"""hlrp_core: the package behind the hlrp notebooks.

Floors (lower floors never import higher ones; see docs/ARCHITECTURE.md):
config/paths/io -> runs -> data, metrics -> models -> training -> analysis, ladder, cluster, viz -> cli.
"""

__version__ = "0.1.0"
