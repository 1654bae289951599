"""medtl: transfer learning for medical image classification, built around TruncatedTL (Peng et al., BMVC 2023):
keep and fine-tune only the bottom of an ImageNet-pretrained CNN, discard the rest, attach a new head.

Flat public API:

```python
import medtl
result = medtl.train(data="breastmnist", backbone="efficientnet_lite0", strategy="truncated", cut="blocks.4")
model = medtl.load_model(result.run_dir)
```

Names are imported on first use (PEP 562), so `import medtl` and `medtl --help` do not load torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"  # the only copy: pyproject.toml reads it (dynamic version)

# public name -> module that defines it
_EXPORTS = {
    "RunResult": "api", "cuts": "api", "ensemble": "api", "evaluate": "api", "resume": "api", "train": "api",
    "load_model": "artifacts", "save_model": "artifacts",
    "BACKBONES": "backbones", "backbone_cuts": "backbones", "create_backbone": "backbones",
    "list_backbones": "backbones", "register_backbone": "backbones",
    "TrainConfig": "config",
    "ImageDataset": "data", "Preprocess": "data", "load_dataset": "data",
    "ConfigError": "errors", "DataError": "errors", "MedtlError": "errors", "WeightsUnavailableError": "errors",
    "classification_metrics": "evaluation", "count_macs": "evaluation", "count_parameters": "evaluation",
    "Classifier": "model", "Head": "model", "ModelSpec": "model", "build_classifier": "model",
    "RunDir": "rundir",
    "STRATEGIES": "strategies", "Strategy": "strategies", "get_strategy": "strategies",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medtl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
