"""``jax.scipy``'s names on fgrad.numpy: so far ``fgrad.scipy.special``."""
from . import special  # noqa: F401

__all__ = ["special"]
