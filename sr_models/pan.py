"""Old import path of PAN (kept for one release); the architecture lives in sr_models/archs/pan.py."""

from sr_models.archs.pan import PAN, SCPA, UPA, UPSAMPLE_STAGES, PAConv

__all__ = ["PAN", "SCPA", "UPA", "UPSAMPLE_STAGES", "PAConv"]
