"""fnn: stateless neural-network pieces on fgrad; ``fnn.functional`` mirrors ``torch.nn.functional``."""
from . import functional  # noqa: F401
