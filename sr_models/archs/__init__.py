"""The architectures, one file each: the model, its blocks and its `Architecture` descriptor.

ARCHITECTURES is the one list. Adding an architecture is a file here and one entry below.
"""

from sr_models.archs import imdn, pan, srresnet
from sr_models.archs.base import Architecture

ARCHITECTURES = {arch.name: arch for arch in (pan.ARCHITECTURE, srresnet.ARCHITECTURE, imdn.ARCHITECTURE)}

__all__ = ["ARCHITECTURES", "Architecture"]
