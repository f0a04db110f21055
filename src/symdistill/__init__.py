"""symdistill: discover symbolic laws of physics by distilling graph networks."""

__version__ = "0.1.0"

from symdistill.errors import SymdistillError

__all__ = ["SymdistillError", "__version__"]
