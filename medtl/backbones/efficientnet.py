"""EfficientNet / EfficientNet-Lite (timm): cuts after the stem, after every inverted-residual block, at
every stage end (``blocks.S``), and after the final 1x1 ``conv_head`` (the full feature extractor); TransFusion
slimming of the blocks after a cut."""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .cuts import Cut
from .family import BackboneFamily, stage_cuts
from .slim import fresh_conv, fresh_norm, rewidth, shrunk, slim_plan


class EfficientNet(BackboneFamily):
    name = "EfficientNet"

    def matches(self, model: nn.Module) -> bool:
        return all(hasattr(model, n) for n in ("conv_stem", "bn1", "blocks", "conv_head", "bn2"))

    def first_conv(self, model: nn.Module) -> str:
        return "conv_stem"

    def cuts(self, model: nn.Module) -> list[Cut]:
        found = stage_cuts(["conv_stem", "bn1"], [(f"blocks.{s}", stage) for s, stage in enumerate(model.blocks)])
        found.append(Cut("conv_head", "block", (*found[-1].units, "conv_head", "bn2"), aliases=("bn2",)))
        return found

    def slim(self, model: nn.Module, cut: Cut, shrink: int) -> None:
        """Rebuild every block after ``cut`` with 1/``shrink`` of its channels, randomly initialised: in the stage the
        cut falls inside only the expanded (inner) width, every later stage whole, and ``conv_head`` (a stage of its
        own) with its output width; see :func:`medtl.backbones.slim.slim_plan`."""
        stages = [[f"blocks.{s}.{j}" for j in range(len(stage))] for s, stage in enumerate(model.blocks)]
        stages.append(["conv_head"])
        width: int | None = None  # output width of the previous rebuilt block
        for path, whole in slim_plan(stages, cut):
            if path == "conv_head":
                c_in = width or model.conv_head.in_channels
                out = shrunk(model.conv_head.out_channels, shrink)
                model.conv_head, model.bn2 = fresh_conv(model.conv_head, c_in, out), fresh_norm(model.bn2, out)
                continue
            block = model.get_submodule(path)
            if getattr(block, "conv_s2d", None) is not None or not hasattr(block, "conv_dw"):
                raise ConfigError(f"medtl cannot slim a {type(block).__name__} block; TransFusion supports "
                                  "EfficientNet's inverted-residual and depthwise-separable blocks.")
            c_in = width or (block.conv_pw if hasattr(block, "conv_pwl") else block.conv_dw).in_channels
            convs, norms, width, se_width = _block_widths(block, c_in, shrink, whole)
            if hasattr(block.se, "conv_reduce"):
                rd = shrunk(block.se.conv_reduce.out_channels, shrink)
                convs.update({"se.conv_reduce": (se_width, rd), "se.conv_expand": (rd, se_width)})
            new = rewidth(block, convs, norms)
            new.has_skip = block.has_skip and c_in == width
            stage, _, index = path.rpartition(".")
            model.get_submodule(stage)[int(index)] = new


FAMILY = EfficientNet()


def _block_widths(block: nn.Module, c_in: int, shrink: int, whole: bool) -> tuple[dict, dict, int, int]:
    """Convolution and BatchNorm widths of a rebuilt block, its output width, and the width its squeeze-excite sees."""
    if hasattr(block, "conv_pwl"):  # inverted residual: expand (conv_pw), depthwise, project (conv_pwl)
        mid = shrunk(block.conv_pw.out_channels, shrink)
        out = shrunk(block.conv_pwl.out_channels, shrink) if whole else block.conv_pwl.out_channels
        convs = {"conv_pw": (c_in, mid), "conv_dw": (mid, mid), "conv_pwl": (mid, out)}
        return convs, {"bn1": mid, "bn2": mid, "bn3": out}, out, mid
    out = shrunk(block.conv_pw.out_channels, shrink) if whole else block.conv_pw.out_channels  # depthwise separable
    return {"conv_dw": (c_in, c_in), "conv_pw": (c_in, out)}, {"bn1": c_in, "bn2": out}, out, c_in
