"""The web demo in a real browser: Playwright for Python driving the system Chromium.

Each test uploads through the page, waits for the overlay, checks the masks against the
predictors, and saves a screenshot under ``output/test-artifacts/web_demo/`` (gitignored).

Needs ``playwright`` (pip, in requirements) and a Chromium binary: Debian's ``chromium``
package (``apt-get install chromium``; ``make install`` does it as root on Debian), or the one
named by ``$RESTR_D2_CHROMIUM``. Playwright's own browser download is not used. Without a
browser the tests are skipped with that message.
"""
import json
import os
import shutil

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from tests.helpers.web_demo import REPO_ROOT, seeded_default_predictor

ARTIFACTS = REPO_ROOT / "output" / "test-artifacts" / "web_demo"
ENABLE_HINT = ("install Chromium to run them: `apt-get install chromium` (Debian/Ubuntu, as root; "
               "`make install` does it when it can) or set RESTR_D2_CHROMIUM=/path/to/chromium")


def find_chromium():
    candidates = [os.environ.get("RESTR_D2_CHROMIUM")] + [
        shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    executable = find_chromium()
    if executable is None:
        pytest.skip("browser tests: no Chromium found; " + ENABLE_HINT)
    with sync_api.sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser, web_demo, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(web_demo.url + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=20000)
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert errors == [], errors  # no JavaScript exception on the page


def rle_decode(rle):
    return mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def test_referring_sentence_to_mask(page, web_demo):
    from restr_d2.engine.predictor import ReferringPredictor

    sentences = ["the red circle left of the man", "the small blue square"]
    page.click("#tab-referring")
    page.set_input_files("#ref-file", web_demo.images[0])
    page.fill("#ref-sentences", "\n".join(sentences))
    with page.expect_response(lambda r: r.url.endswith("/api/predict")) as response_info:
        page.click("#ref-run")
    page.wait_for_selector("body[data-referring='done']", timeout=30000)
    response = response_info.value
    assert response.status == 200
    out = response.json()

    reference = ReferringPredictor(web_demo.ref_cfg)(cv2.imread(web_demo.images[0]), sentences)
    cards = page.locator("#ref-results .card")
    assert cards.count() == 2
    for k, (r, ref) in enumerate(zip(out["referring"], reference)):
        assert r["sentence"] == sentences[k]
        assert np.array_equal(rle_decode(r["mask"]), ref["mask"].numpy())
        # the page decoded the same mask (its own RLE decoder) and drew it
        assert page.evaluate(f"window.demoState.referring.referring[{k}].decodedSum") == int(ref["mask"].sum())
        assert f"score {ref['score']:.3f}" in cards.nth(k).inner_text()
    # "man" is not in the shapes vocabulary: shown as an unknown token
    assert page.locator("#ref-results .card").nth(0).locator(".token.unk").all_inner_texts() == ["man"]
    assert "unknown to the model (<unk>): man" in cards.nth(0).inner_text()
    assert "every word is in the model's vocabulary" in cards.nth(1).inner_text()
    # weights shown for the referring model, the random-init warning for the other one
    models = page.locator("#models")
    assert web_demo.weights in models.locator("[data-kind='referring']").inner_text()
    assert "random initialisation" in models.locator("[data-kind='segmentation']").inner_text()


def test_panoptic_segments_hover_and_threshold(page, web_demo):
    requests = []
    page.on("request", lambda r: requests.append(r.url) if r.url.endswith("/api/predict") else None)
    page.click("#tab-segmentation")
    with page.expect_response(lambda r: r.url.endswith("/api/predict")) as response_info:
        page.set_input_files("#seg-file", web_demo.images[1])
    page.wait_for_selector("body[data-segmentation='done']", timeout=30000)
    out = response_info.value.json()

    predictor = seeded_default_predictor(web_demo.seg_cfg)
    panoptic_seg, segments_info = predictor(cv2.imread(web_demo.images[1]))["panoptic_seg"]
    segments = out["segmentation"]["panoptic"]["segments"]
    assert len(segments) == len(segments_info) >= 2
    for s, ref in zip(segments, segments_info):
        assert np.array_equal(rle_decode(s["mask"]), (panoptic_seg == ref["id"]).numpy())
        assert s["score"] == pytest.approx(ref["score"])
    assert page.locator("#seg-task-panoptic").is_checked()
    assert page.locator("#seg-count").inner_text() == f"{len(segments)} of {len(segments)} panoptic segments shown"

    # hovering the segment under a pixel shows its class and score
    target = max(segments, key=lambda s: s["area"])
    inside = cv2.distanceTransform(rle_decode(target["mask"]).astype(np.uint8), cv2.DIST_L2, 3)
    y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)  # the most interior pixel
    box = page.locator("#seg-canvas").bounding_box()
    h, w = out["image"]["height"], out["image"]["width"]
    page.mouse.move(box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h)
    selected = page.locator("#seg-selected").inner_text()
    assert selected.startswith(f"{target['class']} · score {target['score']:.3f}")

    # the slider re-filters the segments already received: no new request
    scores = sorted(s["score"] for s in segments)
    gap = int(np.argmax(np.diff(scores)))
    threshold = (scores[gap] + scores[gap + 1]) / 2  # the slider's step is "any"
    page.locator("#seg-threshold").fill(str(threshold))
    kept = {s["id"] for s in segments if s["score"] >= threshold}
    assert 0 < len(kept) < len(segments)
    visible = page.evaluate("window.demoState.visibleSegments.map(s => s.id)")
    assert set(visible) == kept
    assert page.locator("#seg-count").inner_text() == f"{len(kept)} of {len(segments)} panoptic segments shown"
    assert page.locator("#seg-legend tr.hidden-seg").count() == len(segments) - len(kept)
    # the instance view is in the same response, also without a request
    page.check("#seg-task-instance")
    n_inst = len(out["segmentation"]["instance"]["segments"])
    assert page.locator("#seg-count").inner_text().endswith(f"of {n_inst} instance segments shown")
    assert len(requests) == 1


def test_zero_byte_upload_shows_the_message_and_the_server_still_answers(page, web_demo, tmp_path):
    page.click("#tab-segmentation")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    page.set_input_files("#seg-file", str(empty))
    page.wait_for_selector("body[data-segmentation='error']", timeout=30000)
    message = page.locator("#seg-error")
    assert message.is_visible()
    assert "empty (0 bytes)" in message.inner_text()
    # the same page goes on working
    page.set_input_files("#seg-file", web_demo.images[0])
    page.wait_for_selector("body[data-segmentation='done']", timeout=30000)
    assert not message.is_visible()
    assert page.locator("#seg-legend tr").count() > 0
    # and the referring panel reports a bad sentence the same way
    page.click("#tab-referring")
    page.click("#ref-examples .example >> nth=0")
    page.fill("#ref-sentences", "🙂")
    page.click("#ref-run")
    page.wait_for_selector("body[data-referring='error']", timeout=30000)
    assert "contains no word" in page.locator("#ref-error").inner_text()
    code, info = web_demo.get("/api/info")
    assert code == 200 and json.dumps(info)
