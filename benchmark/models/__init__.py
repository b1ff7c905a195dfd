"""Model zoo: registry, pretrained-weight resolution, heads and transfer-learning strategies.

    build(model, strategy, num_classes, in_chans=3, image_size=None, load_weights=True) -> BuiltModel
    registry.get(name) / registry.names() / registry.register(ModelSpec(...))
    commands.register(subparsers)   # `benchmark models list | describe | fetch`
"""
from benchmark.models import registry
from benchmark.models.build import BuiltModel, build

__all__ = ["registry", "build", "BuiltModel"]
