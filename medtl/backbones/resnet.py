"""ResNet (torchvision and timm): cuts after the stem, after every residual block, at every stage end; TransFusion
slimming of the blocks after a cut."""
from __future__ import annotations

from torch import nn

from .cuts import Cut
from .family import BackboneFamily, stage_cuts
from .slim import fresh_conv, rewidth, shrunk, slim_plan

STAGES = ("layer1", "layer2", "layer3", "layer4")


class ResNet(BackboneFamily):
    name = "ResNet"

    def matches(self, model: nn.Module) -> bool:
        return all(hasattr(model, n) for n in ("conv1", "bn1", "maxpool", "layer1", "layer4"))

    def first_conv(self, model: nn.Module) -> str:
        return "conv1"

    def cuts(self, model: nn.Module) -> list[Cut]:
        act = "relu" if hasattr(model, "relu") else "act1"
        return stage_cuts(["conv1", "bn1", act, "maxpool"], [(s, getattr(model, s)) for s in STAGES])

    def slim(self, model: nn.Module, cut: Cut, shrink: int) -> None:
        """Rebuild every residual block after ``cut`` with 1/``shrink`` of its channels, randomly initialised (in the
        stage the cut falls inside only the inner width, see :func:`medtl.backbones.slim.slim_plan`)."""
        stages = [[f"{s}.{j}" for j in range(len(getattr(model, s)))] for s in STAGES]
        width: int | None = None  # output width of the previous rebuilt block
        for path, whole in slim_plan(stages, cut):
            block = model.get_submodule(path)
            bottleneck = hasattr(block, "conv3")
            last = "conv3" if bottleneck else "conv2"
            c_in = width or block.conv1.in_channels
            inner = shrunk(block.conv1.out_channels, shrink)
            out = block.get_submodule(last).out_channels
            width = shrunk(out, shrink) if whole else out
            convs = {"conv1": (c_in, inner), last: (inner, width)}
            norms = {"bn1": inner, "bn2": inner if bottleneck else width}
            if bottleneck:
                convs["conv2"], norms["bn3"] = (inner, inner), width
            if block.downsample is not None:
                convs["downsample.0"], norms["downsample.1"] = (c_in, width), width
            new = rewidth(block, convs, norms)
            if block.downsample is None and c_in != width:  # identity shortcut no longer fits: project, as torchvision
                conv = nn.Conv2d(c_in, width, 1, bias=False)
                new.downsample = nn.Sequential(fresh_conv(conv, c_in, width), nn.BatchNorm2d(width))
            parent, _, index = path.rpartition(".")
            model.get_submodule(parent)[int(index)] = new


FAMILY = ResNet()
