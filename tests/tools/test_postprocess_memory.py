"""tools/benchmark/postprocess_memory.py: one case in process, and the RSS guard of the parent."""
import pytest

from tools.benchmark import postprocess_memory

SHAPES = "configs/shapes/mask2former_R18_panoptic.yaml"


@pytest.mark.parametrize("path", ["compact", "old"])
def test_worker_measures_a_predictor_call(path):
    result = postprocess_memory.run_worker(SHAPES, 300, path, threads=2, seed=0, worst_case=True)
    assert result["network_input"] == [160, 160]  # INPUT.MIN_SIZE_TEST of the shapes config
    assert result["band_mb"] == (0.0 if path == "old" else 64.0)
    assert result["peak_rss_mb"] >= result["baseline_rss_mb"] > 0
    outputs = result["outputs"]
    # worst case: DETECTIONS_PER_IMAGE (20) instances at the image size
    if path == "compact":
        assert outputs["sem_seg_labels"] == "(300, 300) torch.int64"
        assert outputs["instances"].startswith("20 instances: pred_masks_packed (20, 300, 38) torch.uint8")
    else:
        assert outputs["sem_seg"] == "(8, 300, 300) torch.float32"
        assert outputs["instances"].startswith("20 instances: pred_masks (20, 300, 300) torch.float32")


def test_parent_kills_a_case_above_the_limit():
    result = postprocess_memory.run_case(SHAPES, 2000, "old", threads=2, seed=0, limit_gb=0.3, timeout=300)
    assert result["outcome"].startswith("killed above 0.3 GB")
    assert result["max_rss_seen_mb"] > 0.3 * 1024
