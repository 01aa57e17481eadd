"""Tiny random-weight models of the four families, each exported to ONNX once per session."""
from pathlib import Path
from typing import Dict, NamedTuple

import pytest
import torch


REPO = Path(__file__).resolve().parents[2]

# config file + overrides: the shapes configs made smaller (fewer layers) so exports stay quick;
# test sizes small, so predictions run in milliseconds
FAMILIES: Dict[str, tuple] = {
    "mask2former": ("configs/shapes/mask2former_R18_panoptic.yaml", [
        "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1, "MODEL.MASK_FORMER.DEC_LAYERS", 2,
        "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 128,
        # random weights score ~0.1: keep every segment so panoptic/instance outputs are non-empty
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.0, "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", 0.0,
    ]),
    "maskformer": ("configs/shapes/maskformer_R18_panoptic.yaml", [
        "MODEL.MASK_FORMER.DEC_LAYERS", 1, "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 128,
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.0, "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", 0.0,
    ]),
    "segmenter": ("configs/shapes/segmenter_mask.yaml", [
        "MODEL.VIT.DEPTH", 1, "MODEL.VIT.IMAGE_SIZE", [64, 64], "MODEL.SEGMENTER.TEST.WINDOW_SIZE", 64,
        "MODEL.SEGMENTER.TEST.WINDOW_STRIDE", 48, "INPUT.MIN_SIZE_TEST", 80, "INPUT.MAX_SIZE_TEST", 160,
    ]),
    "restr": ("configs/shapes/restr_shapes.yaml", [
        "MODEL.VIT.DEPTH", 1, "MODEL.RESTR.LANGUAGE.NUM_LAYERS", 1, "MODEL.VIT.IMAGE_SIZE", [64, 64],
        "INPUT.IMAGE_SIZE", 64,
    ]),
}
EXPORT_SIZE = (64, 64)


class Exported(NamedTuple):
    cfg: object
    model: torch.nn.Module
    spec: object
    path: str


def tiny_cfg(family: str, weights: str = ""):
    from train_net import load_config

    config_file, opts = FAMILIES[family]
    return load_config(str(REPO / config_file), list(opts) + ["MODEL.WEIGHTS", weights])


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """family -> ``Exported``: the model with random weights (saved to ``MODEL.WEIGHTS`` so the
    PyTorch predictors load the same), and its ONNX graph exported at 2x3x64x64."""
    from detectron2.modeling import build_model

    from segmentation_core.export import build_export_spec
    from segmentation_core.export.onnx_export import export_onnx

    cache: Dict[str, Exported] = {}
    root = tmp_path_factory.mktemp("onnx")

    def get(family: str) -> Exported:
        if family not in cache:
            torch.manual_seed(0)
            model = build_model(tiny_cfg(family)).eval()
            _randomize_norms(model)
            weights = str(root / f"{family}.pth")
            torch.save({"model": model.state_dict()}, weights)
            cfg = tiny_cfg(family, weights)
            spec = build_export_spec(model, cfg)
            path = str(root / f"{family}.onnx")
            if family == "segmenter":
                # through the command-line tool (loads MODEL.WEIGHTS, exports, checks, compares)
                from tools.export.export_onnx import main

                config_file, opts = FAMILIES[family]
                status = main(["--config-file", str(REPO / config_file), "--output", path,
                               "--size", str(EXPORT_SIZE[0]), str(EXPORT_SIZE[1]), "--check", "1", "48", "80",
                               "--opts"] + [str(o) for o in opts] + ["MODEL.WEIGHTS", weights])
                assert status == 0
            else:
                export_onnx(spec, path, batch=2, height=EXPORT_SIZE[0], width=EXPORT_SIZE[1])
            cache[family] = Exported(cfg, model, spec, path)
        return cache[family]

    return get


def _randomize_norms(model: torch.nn.Module) -> None:
    # freshly initialised norms are (1, 0) and some projections zero: perturb every parameter a
    # little so no output is trivially constant
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
