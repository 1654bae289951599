"""medtl: transfer learning for medical image classification, built around TruncatedTL (Peng et al., BMVC 2023):
keep and fine-tune only the bottom of an ImageNet-pretrained CNN, discard the rest, attach a new head.

Flat public API::

    import medtl
    result = medtl.train(data="breastmnist", backbone="efficientnet_lite0", strategy="truncated", cut="blocks.4")
    model = medtl.load_model(result.run_dir)
"""
__version__ = "0.1.0"  # first: submodules (api, deploy) record it while the package initialises

from .api import RunResult, cuts, evaluate, train
from .artifacts import load_model, save_model
from .backbones import BACKBONES, backbone_cuts, create_backbone, list_backbones, register_backbone
from .config import TrainConfig
from .data import ImageDataset, Preprocess, load_dataset
from .errors import ConfigError, DataError, MedtlError, WeightsUnavailableError
from .evaluation import classification_metrics, count_macs, count_parameters
from .model import Classifier, Head, ModelSpec, build_classifier
from .strategies import STRATEGIES, Strategy, get_strategy

__all__ = [
    "BACKBONES", "Classifier", "ConfigError", "DataError", "Head", "ImageDataset", "MedtlError", "ModelSpec",
    "Preprocess", "RunResult", "STRATEGIES", "Strategy", "TrainConfig", "WeightsUnavailableError", "backbone_cuts",
    "build_classifier", "classification_metrics", "count_macs", "count_parameters", "create_backbone", "cuts",
    "evaluate", "get_strategy", "list_backbones", "load_dataset", "load_model", "register_backbone", "save_model",
    "train",
]
