"""bgad_mini: a compact, teachable re-implementation of BGAD (Yao et al., CVPR 2023).

Modules follow the book: data -> synthetic -> backbone -> flow -> boundary -> losses -> train -> evaluate -> viz.
Importing the package is fast and has no side effects; heavy modules are imported where they are used.
"""
from .config import Config
from .errors import BgadError

__version__ = "0.1.0"
__all__ = ["Config", "BgadError", "__version__"]
