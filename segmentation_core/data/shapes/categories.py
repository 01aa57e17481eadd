"""Category table of the synthetic ``shapes`` datasets.

Dataset ids have gaps on purpose (things 1-4, stuff 10-13) so that code confusing dataset ids
with contiguous ids fails on this data. Contiguous ids put things first (0-3), then stuff
(4-7), as Mask2Former's COCO panoptic metadata does.
"""

THING_CATEGORIES = [
    {"id": 1, "name": "circle", "isthing": 1, "color": [220, 20, 60]},
    {"id": 2, "name": "square", "isthing": 1, "color": [0, 130, 200]},
    {"id": 3, "name": "triangle", "isthing": 1, "color": [255, 180, 0]},
    {"id": 4, "name": "star", "isthing": 1, "color": [145, 30, 180]},
]
STUFF_CATEGORIES = [
    {"id": 10, "name": "sky", "isthing": 0, "color": [135, 206, 235]},
    {"id": 11, "name": "grass", "isthing": 0, "color": [60, 140, 40]},
    {"id": 12, "name": "water", "isthing": 0, "color": [30, 90, 160]},
    {"id": 13, "name": "wall", "isthing": 0, "color": [150, 110, 90]},
]
CATEGORIES = THING_CATEGORIES + STUFF_CATEGORIES

THING_NAMES = [c["name"] for c in THING_CATEGORIES]
STUFF_NAMES = [c["name"] for c in STUFF_CATEGORIES]
# Dataset id -> contiguous id over all classes (things first); also the semantic PNG values.
DATASET_ID_TO_CONTIGUOUS = {c["id"]: i for i, c in enumerate(CATEGORIES)}
NAME_TO_DATASET_ID = {c["name"]: c["id"] for c in CATEGORIES}

# Attributes of things used by the referring expressions. Colours are the rendered RGB values.
THING_COLORS = {
    "red": (215, 35, 35),
    "green": (40, 215, 70),
    "blue": (35, 60, 225),
    "yellow": (240, 220, 40),
}
# Half-extent of a thing as a fraction of min(H, W). The bins are far apart so that "small",
# "medium" and "large" are unambiguous to a human and to the uniqueness checker.
SIZE_BINS = {"small": (0.065, 0.08), "medium": (0.11, 0.13), "large": (0.17, 0.2)}

IGNORE_LABEL = 255
LABEL_DIVISOR = 1000


def shapes_panoptic_metadata():
    """Metadata of the panoptic / semantic datasets in the Mask2Former convention."""
    return {
        "thing_classes": list(THING_NAMES),
        "thing_colors": [list(c["color"]) for c in THING_CATEGORIES],
        "stuff_classes": [c["name"] for c in CATEGORIES],
        "stuff_colors": [list(c["color"]) for c in CATEGORIES],
        "thing_dataset_id_to_contiguous_id": {
            c["id"]: DATASET_ID_TO_CONTIGUOUS[c["id"]] for c in THING_CATEGORIES
        },
        "stuff_dataset_id_to_contiguous_id": dict(DATASET_ID_TO_CONTIGUOUS),
    }
