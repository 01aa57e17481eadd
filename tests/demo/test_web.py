"""The web demo's JSON endpoint (``demo/web.py``) without a browser: predictions equal the
predictors', bad uploads get a 4xx with a message, the server keeps answering, concurrent
requests queue behind one lock, no client path is opened."""
import concurrent.futures
import io
import struct
import threading
import time
import zlib

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image

from tests.helpers.web_demo import SEG_CONFIG, seeded_default_predictor


def rle_decode(rle):
    return mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def png_bytes(array, mode=None):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width, height):
    """A PNG whose IHDR claims ``width`` x ``height`` (8-bit RGB), with one empty IDAT."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def read_bgr(path):
    return cv2.imread(path, cv2.IMREAD_COLOR)


def test_info_names_models_weights_and_examples(web_demo):
    status, info = web_demo.get("/api/info")
    assert status == 200
    ref, seg = info["models"]["referring"], info["models"]["segmentation"]
    assert ref["weights"] == web_demo.weights and ref["random_init"] is False
    assert ref["config_file"].endswith("restr_shapes.yaml") and ref["meta_architecture"] == "ReSTR"
    assert seg["weights"] is None and seg["random_init"] is True
    assert seg["config_file"] == SEG_CONFIG and [c["name"] for c in seg["classes"]][:4] == [
        "circle", "square", "triangle", "star"]
    ids = [e["id"] for e in info["examples"]]
    assert ids[:2] == ["shapes-val-0", "shapes-val-1"] and "skimage-astronaut" in ids
    assert all(e["sentences"] for e in info["examples"][:2])


def test_referring_json_equals_referring_predictor(web_demo):
    from restr_d2.engine.predictor import ReferringPredictor

    sentences = ["the red circle", "the large man left of the star"]
    with open(web_demo.images[0], "rb") as f:
        status, out = web_demo.post({"sentences": "\n".join(sentences) + "\n\n"},
                                    {"image": ("x.png", f.read())})
    assert status == 200, out
    # no "models" field: every model that applies ran
    assert set(out) == {"referring", "segmentation", "image", "timing"}
    reference = ReferringPredictor(web_demo.ref_cfg)(read_bgr(web_demo.images[0]), sentences)
    assert [r["sentence"] for r in out["referring"]] == sentences
    for r, ref in zip(out["referring"], reference):
        assert np.array_equal(rle_decode(r["mask"]), ref["mask"].numpy())
        assert r["score"] == pytest.approx(ref["score"], abs=1e-6)
        assert r["area"] == int(ref["mask"].sum())
    assert out["referring"][0]["unknown_words"] == []
    assert out["referring"][1]["unknown_words"] == ["man"]
    assert [t["token"] for t in out["referring"][1]["tokens"]][:3] == ["the", "large", "<unk>"]


def test_segmentation_json_equals_default_predictor(web_demo):
    predictor = seeded_default_predictor(web_demo.seg_cfg)
    server_model = web_demo.service.segmentation.predictor.model
    for (k, a), b in zip(server_model.state_dict().items(), predictor.model.state_dict().values()):
        assert torch.equal(a, b), k  # the same random initialisation
    status, out = web_demo.post({"example": "shapes-val-1"})
    assert status == 200, out
    reference = predictor(read_bgr(web_demo.images[1]))
    seg = out["segmentation"]
    assert set(seg) == {"panoptic", "semantic", "instance"}

    panoptic_seg, segments_info = reference["panoptic_seg"]
    assert [s["id"] for s in seg["panoptic"]["segments"]] == [s["id"] for s in segments_info]
    for s, ref in zip(seg["panoptic"]["segments"], segments_info):
        assert np.array_equal(rle_decode(s["mask"]), (panoptic_seg == ref["id"]).numpy())
        assert (s["category_id"], s["isthing"]) == (ref["category_id"], ref["isthing"])
        assert s["score"] == pytest.approx(ref["score"])

    labels = reference["sem_seg"].argmax(0).numpy()
    assert sorted(s["category_id"] for s in seg["semantic"]["segments"]) == np.unique(labels).tolist()
    for s in seg["semantic"]["segments"]:
        mask = rle_decode(s["mask"])
        assert np.array_equal(mask, labels == s["category_id"])
        assert s["score"] == pytest.approx(float(reference["sem_seg"][s["category_id"]].numpy()[mask].mean()), rel=1e-5)

    instances = reference["instances"]
    order = instances.scores.argsort(descending=True)
    got = seg["instance"]["segments"]
    assert len(got) == len(instances)
    assert [s["score"] for s in got] == pytest.approx(instances.scores[order].tolist())
    for s, i in zip(got, order.tolist()):
        assert np.array_equal(rle_decode(s["mask"]), instances.pred_masks[i].numpy())
        assert s["category_id"] == int(instances.pred_classes[i])


@pytest.mark.parametrize("name, make, status, words", [
    ("empty", lambda: b"", 400, "empty (0 bytes)"),
    ("text", lambda: b"this is not an image\n" * 10, 415, "not an image"),
    ("huge header 20000x20000", lambda: png_header_only(20000, 20000), 413, "too large"),
    ("above --max-image-pixels", lambda: png_header_only(6000, 5000), 413, "--max-image-pixels"),
    ("16-bit gray", lambda: png_bytes(np.full((8, 8), 40000, np.uint16)), 415, "16 bits per sample"),
    ("16-bit RGB", lambda: cv2.imencode(".png", np.full((8, 8, 3), 40000, np.uint16))[1].tobytes(), 415,
     "16 bits per sample"),
    ("truncated", lambda: png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))[:300],
     400, "corrupt or truncated"),
])
def test_bad_uploads_get_4xx_with_a_message_and_the_server_answers_after(web_demo, name, make, status, words):
    code, out = web_demo.post({"models": "segmentation"}, {"image": ("upload.png", make())})
    assert code == status, out
    assert words in out["error"] and "Traceback" not in out["error"]
    code, out = web_demo.post({"example": "shapes-val-0", "models": "segmentation"})
    assert code == 200


def test_bad_requests_name_the_problem(web_demo):
    cases = [
        ({}, {}, 400, "No image"),
        ({"example": "shapes-val-0", "sentences": "🙂🙂"}, {}, 422, "contains no word"),
        ({"example": "shapes-val-0", "models": "referring"}, {}, 422, "needs a sentence"),
        ({"example": "shapes-val-0", "models": "detector"}, {}, 400, "Unknown model"),
        ({"example": "shapes-val-0", "sentences": "\n".join(["the circle"] * 9)}, {}, 400, "at most 8"),
        ({"image": "/etc/passwd"}, {}, 400, "must be a file upload"),
    ]
    for fields, files, status, words in cases:
        code, out = web_demo.post(fields, files)
        assert (code, words in out.get("error", "")) == (status, True), (fields, out)


def test_no_client_path_is_opened(web_demo):
    """Example ids and static names are looked up in fixed tables, never joined to a path."""
    for example in ("../../../etc/passwd", web_demo.images[0], "/etc/passwd"):
        code, out = web_demo.post({"example": example})
        assert code == 404 and "Unknown example" in out["error"]
    for path in ("/static/..%2Fweb.py", "/static/web.py", "/examples/..%2F..%2Fweb.png"):
        code, out = web_demo.get(path)
        assert code == 404
    # the upload's file name is not used: a path as file name changes nothing
    with open(web_demo.images[0], "rb") as f:
        data = f.read()
    code, out = web_demo.post({"models": "segmentation"}, {"image": ("/etc/passwd", data)})
    assert code == 200


def test_upload_size_limit(web_demo, monkeypatch):
    monkeypatch.setattr(web_demo.service, "max_upload_bytes", 2000)
    big = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert len(big) > 2000
    code, out = web_demo.post({"models": "segmentation"}, {"image": ("big.png", big)})
    assert code == 413 and "limit is 2000 bytes" in out["error"] and "--max-upload-mb" in out["error"]
    # without Content-Length (chunked), the limit holds while streaming
    import http.client
    host, port = web_demo.url.split("//")[1].split(":")
    from tests.helpers.web_demo import encode_multipart
    body, content_type = encode_multipart({"models": "segmentation"}, {"image": ("big.png", big)})
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/api/predict", body=iter([body[:1000], body[1000:]]),
                 headers={"Content-Type": content_type}, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and b"limit is 2000 bytes" in response.read()
    conn.close()


def test_concurrent_requests_queue_behind_one_lock(web_demo, monkeypatch):
    runner = web_demo.service.runner
    active, overlap = [0], [False]
    original = web_demo.service.referring.predictor.__call__.__func__

    def counting_call(self, *args, **kwargs):
        active[0] += 1
        overlap[0] |= active[0] > 1
        try:
            time.sleep(0.05)
            return original(self, *args, **kwargs)
        finally:
            active[0] -= 1

    monkeypatch.setattr(type(web_demo.service.referring.predictor), "__call__", counting_call)
    with open(web_demo.images[0], "rb") as f:
        data = f.read()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: web_demo.post({"sentences": "the blue square"}, {"image": ("a.png", data)}),
                                range(4)))
    assert [code for code, _ in results] == [200] * 4
    assert len({out["referring"][0]["mask"]["counts"] for _, out in results}) == 1
    assert not overlap[0]
    assert max(out["timing"]["queued_seconds"] for _, out in results) > 0.04  # someone waited

    # a full queue answers 503 "busy" instead of piling up; the waiting request still completes
    monkeypatch.setattr(runner, "max_waiting", 1)
    runner.lock.acquire()
    try:
        waiting = concurrent.futures.ThreadPoolExecutor(1).submit(
            web_demo.post, {"example": "shapes-val-0", "models": "segmentation"})
        deadline = time.time() + 20
        while runner.waiting < 1 and time.time() < deadline:
            time.sleep(0.01)
        code, out = web_demo.post({"example": "shapes-val-0", "models": "segmentation"})
        assert code == 503 and "busy" in out["error"]
    finally:
        runner.lock.release()
    assert waiting.result(timeout=60)[0] == 200


def test_command_line_defaults_and_model_kinds(tmp_path):
    import web

    args = web.get_parser().parse_args([])
    assert args.host == "127.0.0.1"
    assert args.max_upload_mb == 20 and args.max_image_pixels == 25_000_000
    bad = web.get_parser().parse_args(["--config-file", "configs/shapes/restr_shapes.yaml", "--only", "segmentation"])
    with pytest.raises(SystemExit, match="--referring-config-file"):
        web.build_models(bad)
    missing = web.get_parser().parse_args(["--only", "referring", "--referring-opts", "MODEL.WEIGHTS",
                                           str(tmp_path / "nothing.pth")])
    with pytest.raises(Exception, match="nothing.pth"):
        web.build_models(missing)


def test_page_and_static_files_are_served(web_demo):
    import urllib.request

    with urllib.request.urlopen(web_demo.url + "/", timeout=10) as r:
        page = r.read().decode()
        assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "/static/app.js" in page and "ref-sentences" in page
    with urllib.request.urlopen(web_demo.url + "/static/app.js", timeout=10) as r:
        assert "decodeRle" in r.read().decode()
    with urllib.request.urlopen(web_demo.url + "/examples/shapes-val-0.png", timeout=10) as r:
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB")),
                              np.asarray(Image.open(web_demo.images[0]).convert("RGB")))


def test_a_server_with_one_model_says_what_it_lacks(web_demo):
    import web

    only_referring = web.DemoService(None, web_demo.service.referring)
    image = read_bgr(web_demo.images[0])
    assert set(only_referring.info()["models"]) == {"referring"}
    with pytest.raises(web.UploadError, match="give 'sentences'") as e:
        only_referring.predict(image, [], None)
    assert e.value.status == 400
    with pytest.raises(web.UploadError, match="no segmentation model"):
        only_referring.predict(image, ["the red circle"], ["segmentation"])
    out = only_referring.predict(image, ["the red circle"], None)
    assert set(out) == {"referring", "image", "timing"}
    with pytest.raises(ValueError, match="needs a segmentation model, a referring model or both"):
        web.DemoService(None, None)
