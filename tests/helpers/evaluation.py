"""Read what an evaluator saved, so tests check results rather than the log's copy of them."""
import os

import numpy as np
import torch


def saved_sem_seg_evaluation(output_dir, dataset_name, folder="inference"):
    """detectron2's SemSegEvaluator result (``mIoU``, ``IoU-<class>``, ...) as saved in
    ``<output_dir>/<folder>/<dataset>/sem_seg_evaluation.pth``; NaN (class absent) becomes None."""
    path = os.path.join(output_dir, folder, dataset_name, "sem_seg_evaluation.pth")
    # the values are numpy float64 scalars: allow exactly those
    with torch.serialization.safe_globals([np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType]):
        res = torch.load(path, weights_only=True)
    return {k: (None if np.isnan(v) else float(v)) for k, v in res.items()}
