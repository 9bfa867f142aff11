"""Every primitive with its implementation and its JVP, VJP and batching rules, one family a file."""
from . import elementwise, shape, reduction, indexing, dot, conv  # noqa: F401
from . import linalg  # noqa: F401
