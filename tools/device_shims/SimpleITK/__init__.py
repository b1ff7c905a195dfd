"""Stands in for SimpleITK on the GPU machine only, where its 52 MB wheel does not fit the
device tool's 64 MiB (tools/build_device_pack.py). TorchIO imports SimpleITK when it starts, but
its intensity artefacts (noise, bias field, gamma, ghosting, spike, blur) never call it; motion
resamples through it. tools/device_check.py puts this folder on the path only where SimpleITK
is missing, and its robustness pass uses noise. Anything that does call SimpleITK fails here
with an ImportError that says so, never with a made-up result.
"""


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)

    class Missing:
        def __init__(self, *args, **kwargs):
            raise ImportError(f"SimpleITK.{name}: SimpleITK is not installed on this machine "
                              "(tools/device_shims stands in; the device check carries no wheel)")

        def __call__(self, *args, **kwargs):  # a module-level function
            raise ImportError(f"SimpleITK.{name}: SimpleITK is not installed on this machine")

    Missing.__name__ = name
    return Missing
