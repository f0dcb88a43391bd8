"""Old import path of SRResNet (kept for one release); the architecture lives in sr_models/archs/srresnet.py."""

from sr_models.archs.srresnet import UPSAMPLE_STAGES, SRResNet

__all__ = ["UPSAMPLE_STAGES", "SRResNet"]
