"""Model zoo: registry, pretrained-weight resolution, heads and transfer-learning strategies."""
from benchmark.models import registry
from benchmark.models.build import BuiltModel, build

__all__ = ["registry", "build", "BuiltModel"]
