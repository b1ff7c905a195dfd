"""Model zoo: registry, pretrained-weight resolution, heads and transfer-learning strategies.

    models.build.build(model, strategy, num_classes, in_chans=3, image_size=None) -> BuiltModel
    registry.get(name) / registry.names() / registry.register(ModelSpec(...))
    commands.register(subparsers)   # `mribench models list | describe | fetch`

Nothing is imported here: the registry and the command wiring stay light (no torch), and
`mribench.models.build` loads torch and timm when a model is actually built.
"""
