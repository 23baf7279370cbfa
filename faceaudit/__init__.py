"""faceaudit: audit generated faces across social groups, with numbers and uncertainty.

Layers (see ``design/ARCHITECTURE.md``):

* ``faceaudit.core``: pure JAX metric kernels on ``(n, d)`` embedding arrays;
* top-level modules: I/O, tables and the command line, wrapping the core;
* ``faceaudit.models``: numpyro models of demographic disparity and training mix.
"""

__version__ = "0.1.0"
