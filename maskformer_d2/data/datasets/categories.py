"""Class lists of the real datasets (facts of the datasets, in the orders the official
MaskFormer / Mask2Former registrations use, so that contiguous ids match released checkpoints).

Every list here is indexed by the *contiguous* id a model predicts.
"""
import os
from functools import lru_cache

from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES, COCO_CATEGORIES

__all__ = [
    "ADE20K_150_NAMES",
    "ADE20K_150_COLORS",
    "ADE20K_150_THING_IDS",
    "ADE20K_INSTANCE_CATEGORIES",
    "ade20k_full_categories",
    "COCO_STUFF_171_CATEGORIES",
    "MAPILLARY_VISTAS_CATEGORIES",
]

# ---------------------------------------------------------------------------------------------
# ADE20K SceneParsing-150. Names: detectron2's builtin list (identical to the official one).
ADE20K_150_NAMES = list(ADE20K_SEM_SEG_CATEGORIES)

# fmt: off
# The palette the official panoptic/semantic registration attaches as `stuff_colors`.
ADE20K_150_COLORS = [
    [120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3],
    [120, 120, 80], [140, 140, 140], [204, 5, 255], [230, 230, 230], [4, 250, 7],
    [224, 5, 255], [235, 255, 7], [150, 5, 61], [120, 120, 70], [8, 255, 51],
    [255, 6, 82], [143, 255, 140], [204, 255, 4], [255, 51, 7], [204, 70, 3],
    [0, 102, 200], [61, 230, 250], [255, 6, 51], [11, 102, 255], [255, 7, 71],
    [255, 9, 224], [9, 7, 230], [220, 220, 220], [255, 9, 92], [112, 9, 255],
    [8, 255, 214], [7, 255, 224], [255, 184, 6], [10, 255, 71], [255, 41, 10],
    [7, 255, 255], [224, 255, 8], [102, 8, 255], [255, 61, 6], [255, 194, 7],
    [255, 122, 8], [0, 255, 20], [255, 8, 41], [255, 5, 153], [6, 51, 255],
    [235, 12, 255], [160, 150, 20], [0, 163, 255], [140, 140, 140], [250, 10, 15],
    [20, 255, 0], [31, 255, 0], [255, 31, 0], [255, 224, 0], [153, 255, 0],
    [0, 0, 255], [255, 71, 0], [0, 235, 255], [0, 173, 255], [31, 0, 255],
    [11, 200, 200], [255, 82, 0], [0, 255, 245], [0, 61, 255], [0, 255, 112],
    [0, 255, 133], [255, 0, 0], [255, 163, 0], [255, 102, 0], [194, 255, 0],
    [0, 143, 255], [51, 255, 0], [0, 82, 255], [0, 255, 41], [0, 255, 173],
    [10, 0, 255], [173, 255, 0], [0, 255, 153], [255, 92, 0], [255, 0, 255],
    [255, 0, 245], [255, 0, 102], [255, 173, 0], [255, 0, 20], [255, 184, 184],
    [0, 31, 255], [0, 255, 61], [0, 71, 255], [255, 0, 204], [0, 255, 194],
    [0, 255, 82], [0, 10, 255], [0, 112, 255], [51, 0, 255], [0, 194, 255],
    [0, 122, 255], [0, 255, 163], [255, 153, 0], [0, 255, 10], [255, 112, 0],
    [143, 255, 0], [82, 0, 255], [163, 255, 0], [255, 235, 0], [8, 184, 170],
    [133, 0, 255], [0, 255, 92], [184, 0, 255], [255, 0, 31], [0, 184, 255],
    [0, 214, 255], [255, 0, 112], [92, 255, 0], [0, 224, 255], [112, 224, 255],
    [70, 184, 160], [163, 0, 255], [153, 0, 255], [71, 255, 0], [255, 0, 163],
    [255, 204, 0], [255, 0, 143], [0, 255, 235], [133, 255, 0], [255, 0, 235],
    [245, 0, 255], [255, 0, 122], [255, 245, 0], [10, 190, 212], [214, 255, 0],
    [0, 204, 255], [20, 0, 255], [255, 255, 0], [0, 153, 255], [0, 41, 255],
    [0, 255, 204], [41, 0, 255], [41, 255, 0], [173, 0, 255], [0, 245, 255],
    [71, 0, 255], [122, 0, 255], [0, 255, 184], [0, 92, 255], [184, 255, 0],
    [0, 133, 255], [255, 214, 0], [25, 194, 194], [102, 255, 0], [92, 0, 255],
]

# The 100 ADE20K instance classes, as SceneParsing-150 ids (0-based): the "things" of the
# ADE20K panoptic / instance benchmarks.
ADE20K_150_THING_IDS = [
    7, 8, 10, 12, 14, 15, 18, 19, 20, 22, 23, 24, 27, 30, 31, 32, 33, 35, 36, 37,
    38, 39, 41, 42, 43, 44, 45, 47, 49, 50, 53, 55, 56, 57, 58, 62, 64, 65, 66, 67,
    69, 70, 71, 72, 73, 74, 75, 76, 78, 80, 81, 82, 83, 85, 86, 87, 88, 89, 90, 92,
    93, 95, 97, 98, 102, 103, 104, 107, 108, 110, 111, 112, 115, 116, 118, 119, 120, 121, 123, 124,
    125, 126, 127, 129, 130, 132, 133, 134, 135, 136, 137, 138, 139, 142, 143, 144, 146, 147, 148, 149,
]

# Short names the ADE20K instance annotation (``imgCatIds.json``) gives those 100 classes.
_ADE20K_INSTANCE_NAMES = [
    "bed", "windowpane", "cabinet", "person", "door", "table", "curtain", "chair", "car",
    "painting", "sofa", "shelf", "mirror", "armchair", "seat", "fence", "desk", "wardrobe",
    "lamp", "bathtub", "railing", "cushion", "box", "column", "signboard", "chest of drawers",
    "counter", "sink", "fireplace", "refrigerator", "stairs", "case", "pool table", "pillow",
    "screen door", "bookcase", "coffee table", "toilet", "flower", "book", "bench", "countertop",
    "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "arcade machine",
    "bus", "towel", "light", "truck", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "apparel", "pole", "bannister", "ottoman", "bottle",
    "van", "ship", "fountain", "washer", "plaything", "stool", "barrel", "basket", "bag",
    "minibike", "oven", "ball", "food", "step", "trade name", "microwave", "pot", "animal",
    "bicycle", "dishwasher", "screen", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "plate", "monitor", "bulletin board", "radiator", "glass", "clock",
    "flag",
]
# fmt: on

#: ``[{"id": <150-class id>, "name": ...}]``: the json category ids written by
#: ``datasets/prepare_ade20k_ins_seg.py`` are the 150-class ids, as in the official files.
ADE20K_INSTANCE_CATEGORIES = [
    {"id": i, "name": n} for i, n in zip(ADE20K_150_THING_IDS, _ADE20K_INSTANCE_NAMES)
]


@lru_cache(maxsize=1)
def ade20k_full_categories():
    """The 847 ADE20K-full classes, ``[{"id": ADE full-index id, "name": ..., "trainId": i}]``
    in trainId order (trainId = the value stored in the 16-bit TIFF labels)."""
    path = os.path.join(os.path.dirname(__file__), "_ade20k_full_classes.txt")
    cats = []
    with open(path, encoding="utf-8") as f:
        for train_id, line in enumerate(f.read().splitlines()):
            ade_id, name = line.split("\t", 1)
            cats.append({"id": int(ade_id), "name": name, "trainId": train_id})
    if len(cats) != 847:
        raise RuntimeError(f"{path} must list 847 ADE20K-full classes, found {len(cats)}")
    return cats


# ---------------------------------------------------------------------------------------------
# COCO-Stuff (171 classes = 80 things + 91 stuff). Things as detectron2's COCO list; stuff ids
# 92..182 in the order of the COCO-Stuff label file.
# fmt: off
_COCO_STUFF_91_NAMES = [
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence",
    "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog",
    "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill",
    "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud",
    "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform",
    "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad",
    "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone",
    "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
]
# fmt: on
COCO_STUFF_171_CATEGORIES = [
    {"id": c["id"], "name": c["name"], "isthing": 1, "color": c["color"]}
    for c in COCO_CATEGORIES
    if c["isthing"] == 1
] + [{"id": 92 + i, "name": n, "isthing": 0} for i, n in enumerate(_COCO_STUFF_91_NAMES)]

# ---------------------------------------------------------------------------------------------
# Mapillary Vistas v1.2: 65 evaluated classes (id = index + 1; label value 65 = "unlabeled").
# (readable name, label-file name, is-thing, color)
# fmt: off
MAPILLARY_VISTAS_CATEGORIES = [
    ("Bird", "animal--bird", 1, [165, 42, 42]),
    ("Ground Animal", "animal--ground-animal", 1, [0, 192, 0]),
    ("Curb", "construction--barrier--curb", 0, [196, 196, 196]),
    ("Fence", "construction--barrier--fence", 0, [190, 153, 153]),
    ("Guard Rail", "construction--barrier--guard-rail", 0, [180, 165, 180]),
    ("Barrier", "construction--barrier--other-barrier", 0, [90, 120, 150]),
    ("Wall", "construction--barrier--wall", 0, [102, 102, 156]),
    ("Bike Lane", "construction--flat--bike-lane", 0, [128, 64, 255]),
    ("Crosswalk - Plain", "construction--flat--crosswalk-plain", 1, [140, 140, 200]),
    ("Curb Cut", "construction--flat--curb-cut", 0, [170, 170, 170]),
    ("Parking", "construction--flat--parking", 0, [250, 170, 160]),
    ("Pedestrian Area", "construction--flat--pedestrian-area", 0, [96, 96, 96]),
    ("Rail Track", "construction--flat--rail-track", 0, [230, 150, 140]),
    ("Road", "construction--flat--road", 0, [128, 64, 128]),
    ("Service Lane", "construction--flat--service-lane", 0, [110, 110, 110]),
    ("Sidewalk", "construction--flat--sidewalk", 0, [244, 35, 232]),
    ("Bridge", "construction--structure--bridge", 0, [150, 100, 100]),
    ("Building", "construction--structure--building", 0, [70, 70, 70]),
    ("Tunnel", "construction--structure--tunnel", 0, [150, 120, 90]),
    ("Person", "human--person", 1, [220, 20, 60]),
    ("Bicyclist", "human--rider--bicyclist", 1, [255, 0, 0]),
    ("Motorcyclist", "human--rider--motorcyclist", 1, [255, 0, 100]),
    ("Other Rider", "human--rider--other-rider", 1, [255, 0, 200]),
    ("Lane Marking - Crosswalk", "marking--crosswalk-zebra", 1, [200, 128, 128]),
    ("Lane Marking - General", "marking--general", 0, [255, 255, 255]),
    ("Mountain", "nature--mountain", 0, [64, 170, 64]),
    ("Sand", "nature--sand", 0, [230, 160, 50]),
    ("Sky", "nature--sky", 0, [70, 130, 180]),
    ("Snow", "nature--snow", 0, [190, 255, 255]),
    ("Terrain", "nature--terrain", 0, [152, 251, 152]),
    ("Vegetation", "nature--vegetation", 0, [107, 142, 35]),
    ("Water", "nature--water", 0, [0, 170, 30]),
    ("Banner", "object--banner", 1, [255, 255, 128]),
    ("Bench", "object--bench", 1, [250, 0, 30]),
    ("Bike Rack", "object--bike-rack", 1, [100, 140, 180]),
    ("Billboard", "object--billboard", 1, [220, 220, 220]),
    ("Catch Basin", "object--catch-basin", 1, [220, 128, 128]),
    ("CCTV Camera", "object--cctv-camera", 1, [222, 40, 40]),
    ("Fire Hydrant", "object--fire-hydrant", 1, [100, 170, 30]),
    ("Junction Box", "object--junction-box", 1, [40, 40, 40]),
    ("Mailbox", "object--mailbox", 1, [33, 33, 33]),
    ("Manhole", "object--manhole", 1, [100, 128, 160]),
    ("Phone Booth", "object--phone-booth", 1, [142, 0, 0]),
    ("Pothole", "object--pothole", 0, [70, 100, 150]),
    ("Street Light", "object--street-light", 1, [210, 170, 100]),
    ("Pole", "object--support--pole", 1, [153, 153, 153]),
    ("Traffic Sign Frame", "object--support--traffic-sign-frame", 1, [128, 128, 128]),
    ("Utility Pole", "object--support--utility-pole", 1, [0, 0, 80]),
    ("Traffic Light", "object--traffic-light", 1, [250, 170, 30]),
    ("Traffic Sign (Back)", "object--traffic-sign--back", 1, [192, 192, 192]),
    ("Traffic Sign (Front)", "object--traffic-sign--front", 1, [220, 220, 0]),
    ("Trash Can", "object--trash-can", 1, [140, 140, 20]),
    ("Bicycle", "object--vehicle--bicycle", 1, [119, 11, 32]),
    ("Boat", "object--vehicle--boat", 1, [150, 0, 255]),
    ("Bus", "object--vehicle--bus", 1, [0, 60, 100]),
    ("Car", "object--vehicle--car", 1, [0, 0, 142]),
    ("Caravan", "object--vehicle--caravan", 1, [0, 0, 90]),
    ("Motorcycle", "object--vehicle--motorcycle", 1, [0, 0, 230]),
    ("On Rails", "object--vehicle--on-rails", 0, [0, 80, 100]),
    ("Other Vehicle", "object--vehicle--other-vehicle", 1, [128, 64, 64]),
    ("Trailer", "object--vehicle--trailer", 1, [0, 0, 110]),
    ("Truck", "object--vehicle--truck", 1, [0, 0, 70]),
    ("Wheeled Slow", "object--vehicle--wheeled-slow", 1, [0, 0, 192]),
    ("Car Mount", "void--car-mount", 0, [32, 32, 32]),
    ("Ego Vehicle", "void--ego-vehicle", 0, [120, 10, 10]),
]
# fmt: on
