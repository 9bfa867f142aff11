"""fnn: stateless neural-network pieces on fgrad; ``fnn.functional`` mirrors ``torch.nn.functional``.

``fnn.models`` holds whole models (GPT-1, GPT-2 and their generation), ``fnn.text`` the
byte-level BPE tokenizer.
"""
from . import functional  # noqa: F401
from . import init, io, utils  # noqa: F401
from .layers import *  # noqa: F401,F403
from . import data  # noqa: F401
from . import models, text  # noqa: F401
