"""The errors fgrad raises, so that users can catch them by kind.

Every message says which call failed, what it expected, what it got and what to do.
"""


class FgradError(Exception):
    """Base class of fgrad's own errors."""


class UnexpectedTracerError(FgradError):
    """A tracer was used after the transform that created it returned (a tracer leak)."""


class TracerArrayConversionError(FgradError, TypeError):
    """A traced value was handed to raw NumPy; use ``fgrad.numpy`` instead."""


class ConcretizationError(FgradError, TypeError):
    """Python needed a concrete value (``bool``, ``int``, an index) that is not known while tracing."""


class TransformError(FgradError, ValueError):
    """A transform was called with arguments it cannot handle (shapes, dtypes, axes, trees)."""


class MissingRuleError(FgradError, TypeError):
    """A primitive lacks the rule a transform needs (the registry test keeps this from happening)."""
