"""The ``web_demo`` fixture: one running ``demo/web.py`` server per test session (see
``web_demo_helpers.py``)."""
import sys
import threading
import time

import pytest
import torch

from tests.helpers.web_demo import REF_CONFIG, REPO_ROOT, SEG_CONFIG, SEG_SEED, DemoServer, save_random_weights


@pytest.fixture(scope="session")
def web_demo(tmp_path_factory):
    import web  # demo/web.py (demo/ is put on sys.path below)

    from segmentation_core.data.shapes import ShapesConfig
    from segmentation_core.config import load_config

    tmp = tmp_path_factory.mktemp("web_demo")
    ref_cfg = load_config(str(REPO_ROOT / REF_CONFIG))
    weights = str(tmp / "restr_random.pth")
    save_random_weights(ref_cfg, weights)
    ref_cfg = load_config(str(REPO_ROOT / REF_CONFIG), ["MODEL.WEIGHTS", weights])
    seg_cfg = load_config(str(REPO_ROOT / SEG_CONFIG))

    torch.manual_seed(SEG_SEED)
    segmentation = web.SegmentationModel(seg_cfg, SEG_CONFIG)
    referring = web.ReferringModel(ref_cfg, REF_CONFIG)
    shapes_root = str(tmp / "data")
    examples = web.build_examples(2, skimage=True, shapes_root=shapes_root,
                                  shapes_config=ShapesConfig(num_train=0, num_val=2))
    service = web.DemoService(segmentation, referring, examples)
    sock = web.bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = web.make_server(web.create_app(service), log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the web demo server did not start")
        time.sleep(0.05)
    images = sorted(str(p) for p in (tmp / "data" / "shapes" / "images").glob("val_*.png"))
    yield DemoServer(f"http://127.0.0.1:{port}", service, seg_cfg, ref_cfg, images, weights)
    server.should_exit = True
    thread.join(timeout=10)


def pytest_configure(config):
    demo_dir = str(REPO_ROOT / "demo")
    if demo_dir not in sys.path:
        sys.path.insert(0, demo_dir)
