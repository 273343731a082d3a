"""Data: registry, embedded/mirror generators, episode index, sampler, loader, benchmark. TF is imported lazily."""

_LAZY = {"build_datamodule": "datamodule", "open_loader": "loader", "PairLoader": "loader",
         "PairDataModule": "datamodule",
         "effective_knobs": None}


def __getattr__(name):  # lazy: importing hlrp_core.data must not import lightning/torch/TF
    if name not in _LAZY:
        raise AttributeError(f"module 'hlrp_core.data' has no attribute {name!r}")
    import importlib

    if _LAZY[name] is None:
        from ..config.data import effective_knobs

        return effective_knobs
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
