"""fnn: stateless neural-network pieces on fgrad; ``fnn.functional`` mirrors ``torch.nn.functional``."""
from . import functional  # noqa: F401
from . import init, io, utils  # noqa: F401
from .layers import *  # noqa: F401,F403
from . import data  # noqa: F401
