"""End to end: ``DefaultPredictor`` on small random-weight models returns every output type.

Official R50 panoptic configs (tests/fixtures/keys) shrunk like the reference head
fixtures (64 channels, 16 queries, 10 classes) on a ResNet-18, small test resolution, random
weights.
"""

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.projects.deeplab import add_deeplab_config

from maskformer_d2 import add_mask_former_config, add_maskformer2_config
from tests.helpers.paths import FIXTURES

KEYS_DIR = FIXTURES / "keys"
DATASET = "maskformer_test_predictor_10cls"
THINGS = [0, 1, 2, 3, 8]


def _cfg(name, dec_layers):
    cfg = get_cfg()
    add_deeplab_config(cfg)
    (add_mask_former_config if name.startswith("mf_") else add_maskformer2_config)(cfg)
    cfg.merge_from_file(str(KEYS_DIR / f"{name}.yaml"))
    cfg.merge_from_list([
        "MODEL.SEM_SEG_HEAD.CONVS_DIM", 64, "MODEL.SEM_SEG_HEAD.MASK_DIM", 64,
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 10, "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1,
        "MODEL.MASK_FORMER.HIDDEN_DIM", 64, "MODEL.MASK_FORMER.DIM_FEEDFORWARD", 128,
        "MODEL.MASK_FORMER.NHEADS", 4, "MODEL.MASK_FORMER.DEC_LAYERS", dec_layers,
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 16,
        "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", True, "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True,
        "MODEL.MASK_FORMER.TEST.INSTANCE_ON", True,
        # Random weights give class probabilities ~0.1-0.2: low thresholds keep some segments.
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.0, "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", 0.0,
        "MODEL.MASK_FORMER.SIZE_DIVISIBILITY", 32,
        # ResNet-18 instead of 50: same code path, a quarter of the work.
        "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
        "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 128,
        "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
        "DATASETS.TRAIN", (DATASET,), "DATASETS.TEST", (DATASET,),
    ])
    return cfg


@pytest.mark.parametrize("name,dec_layers", [("m2f_coco_panoptic_R50", 3), ("mf_coco_panoptic_R50", 2)])
def test_default_predictor_outputs(name, dec_layers):
    meta = MetadataCatalog.get(DATASET)
    if not hasattr(meta, "thing_dataset_id_to_contiguous_id"):
        meta.set(thing_dataset_id_to_contiguous_id={c + 1: c for c in THINGS},
                 stuff_dataset_id_to_contiguous_id={c + 1: c for c in range(10) if c not in THINGS})
    torch.manual_seed(0)
    predictor = DefaultPredictor(_cfg(name, dec_layers))
    height, width = 75, 101  # odd size; resized to 64x86 inside, padded to 64x96
    image = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)  # BGR
    out = predictor(image)

    assert set(out) == {"sem_seg", "panoptic_seg", "instances"}
    sem_seg = out["sem_seg"]
    assert sem_seg.shape == (10, height, width) and sem_seg.dtype == torch.float32
    assert torch.isfinite(sem_seg).all() and (sem_seg >= 0).all()

    panoptic_seg, segments_info = out["panoptic_seg"]
    assert panoptic_seg.shape == (height, width) and panoptic_seg.dtype == torch.int32
    assert len(segments_info) > 0
    assert set(panoptic_seg.unique().tolist()) - {0} == {s["id"] for s in segments_info}
    for s in segments_info:
        assert s["isthing"] == (s["category_id"] in THINGS)

    inst = out["instances"]
    assert inst.image_size == (height, width)
    assert 0 < len(inst) <= 100
    assert inst.pred_masks.shape == (len(inst), height, width)
    assert inst.scores.shape == (len(inst),) and inst.pred_boxes.tensor.shape == (len(inst), 4)
    assert set(inst.pred_classes.tolist()) <= set(THINGS)  # panoptic_on keeps thing classes only

    # One training step of the same model: official loss names, finite, gradients reach the backbone.
    from detectron2.structures import Instances

    model = predictor.model.train()
    masks = torch.zeros(2, 64, 80, dtype=torch.bool)
    masks[0, :30], masks[1, 30:, 20:60] = True, True
    batch = [{"image": torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8).float(),
              "instances": Instances((64, 80), gt_classes=torch.tensor([4, 1]), gt_masks=masks)}]
    losses = model(batch)
    assert sorted(losses) == sorted(model.criterion.weight_dict)
    assert len(losses) == 3 * dec_layers
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
