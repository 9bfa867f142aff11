"""fnn's layers: immutable hyper-parameter objects with ``init(key) -> params`` and a pure ``apply``.

One family per module; ``base`` defines the protocol every layer follows.
"""
from .activation import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .base import *  # noqa: F401,F403
from .container import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403
