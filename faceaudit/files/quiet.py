"""Third-party imports that announce themselves, imported once, quietly.

arviz 0.23 warns at import (a ``FutureWarning`` about its 1.0 refactor) and numpyro's
first ``MCMC`` with vectorised chains on one device warns about it; neither is something a
user of faceaudit can act on, so neither reaches their terminal. Everything faceaudit
itself warns about still does.
"""

from __future__ import annotations

import functools
import warnings


@functools.cache
def arviz():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
        import arviz as az
    return az
