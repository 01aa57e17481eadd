#!/usr/bin/env python3
"""Web demo: type a sentence, see the mask; upload a photo, explore its segments.

    python demo/web.py                      # shapes Mask2Former + shapes ReSTR, random weights
    python demo/web.py --config-file configs/shapes/mask2former_R18_panoptic.yaml \\
        --opts MODEL.WEIGHTS out/m2f/model_final.pth \\
        --referring-config-file configs/shapes/restr_shapes.yaml \\
        --referring-opts MODEL.WEIGHTS out/restr/model_final.pth
    # then open http://127.0.0.1:7860

One page (``demo/web_page/``) and a JSON endpoint, served by Starlette + uvicorn:

* ``GET /``: the page. ``GET /api/info``: models, weights, limits, example images.
* ``POST /api/predict`` (multipart form): ``image`` (a file) or ``example`` (an example id from
  ``/api/info``), optional ``sentences`` (one per line; referring model), optional ``models``
  (``segmentation``, ``referring`` or both, comma-separated; default: the segmentation model,
  plus the referring model when sentences are given). Returns masks as COCO RLE, segments with
  class and score, referring scores and the tokens the model did not know.

    curl -F image=@photo.jpg -F sentences="the red circle" http://127.0.0.1:7860/api/predict

The web layer holds no model logic: it decodes uploads, calls ``DefaultPredictor`` /
``ReferringPredictor`` under one lock (the models are not assumed thread-safe; waiting requests
queue, up to ``--max-queue``) and turns their outputs into JSON. Bad uploads (empty, not an image,
too many bytes or pixels, 16-bit) get a 4xx with a message; no path sent by a client is opened.
"""
import argparse
import contextlib
import io
import logging
import os
import socket
import threading
import time
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

logger = logging.getLogger("restr_d2.web")

PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web_page")
DEFAULT_CONFIG = "configs/shapes/mask2former_R18_panoptic.yaml"
DEFAULT_REFERRING_CONFIG = "configs/shapes/restr_shapes.yaml"
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# 25 megapixels (a 6000 x 4000 photo): above any camera image a demo user uploads, far below
# what exhausts memory (the models resize to a few hundred pixels anyway)
DEFAULT_MAX_IMAGE_PIXELS = 25_000_000
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}


class UploadError(Exception):
    """A request the demo refuses: ``status`` (4xx) and a message for people."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class BodyTooLarge(Exception):
    pass


class ServerBusy(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# uploads


def _is_sixteen_bit(image: Image.Image) -> bool:
    """16 bits per sample: PIL modes I;16* / I / F, or a PNG/TIFF decoder reading 16-bit samples
    into an 8-bit mode (PIL silently drops the low byte of 16-bit RGB PNGs)."""
    if image.mode in SIXTEEN_BIT_MODES:
        return True
    return any(";16" in str(tile[3]) for tile in (image.tile or []))


def decode_upload(data: bytes, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Uploaded bytes -> (H, W, 3) uint8 BGR image (EXIF orientation applied, alpha dropped).

    Raises ``UploadError``: 400 empty, 415 not an image / 16-bit, 413 more than ``max_pixels``
    (checked on the header, before decoding), 400 corrupt or truncated.
    """
    if not data:
        raise UploadError(400, "The uploaded file is empty (0 bytes): choose an image file (PNG, JPEG, ...).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UploadError(
            415, f"The uploaded file ({len(data)} bytes) is not an image this demo can read: "
                 "upload a PNG, JPEG, BMP, TIFF, GIF or WebP file.",
        ) from None
    except Image.DecompressionBombError as e:
        raise UploadError(413, f"The image is too large: {e}. Downscale it below {max_pixels} pixels.") from None
    except Exception as e:  # PIL raises many types on malformed headers
        raise UploadError(400, f"The image header cannot be read ({type(e).__name__}: {e}).") from None
    width, height = image.size
    if max_pixels and width * height > max_pixels:
        raise UploadError(
            413, f"The image is {width} x {height} = {width * height} pixels, more than this "
                 f"server's limit of {max_pixels} (--max-image-pixels): downscale it.",
        )
    if width == 0 or height == 0:
        raise UploadError(400, f"The image is empty ({width} x {height} pixels).")
    if _is_sixteen_bit(image):
        raise UploadError(
            415, f"The image has 16 bits per sample (PIL mode {image.mode}, {image.format}); the "
                 "models take 8-bit images: save it as an 8-bit PNG or JPEG "
                 "(e.g. `convert in.png -depth 8 out.png`).",
        )
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb = np.asarray(image.convert("RGB"))
    except Exception as e:  # OSError, SyntaxError, ValueError, zlib.error, ...
        raise UploadError(
            400, f"The image is corrupt or truncated ({image.format}, {width} x {height}): "
                 f"{type(e).__name__}: {e}",
        ) from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def parse_sentences(text: str, max_sentences: int) -> List[str]:
    """One sentence per non-blank line."""
    sentences = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(sentences) > max_sentences:
        raise UploadError(
            400, f"{len(sentences)} sentences given; this server takes at most {max_sentences} "
                 "per request (--max-sentences).",
        )
    return sentences


# ---------------------------------------------------------------------------------------------
# outputs -> JSON


def mask_to_rle(mask: np.ndarray) -> Dict:
    """(H, W) bool -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (pycocotools)."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle["counts"].decode("ascii")}


def _bbox(mask: np.ndarray) -> Optional[List[int]]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _palette(n: int) -> List[List[int]]:
    from detectron2.utils.colormap import colormap

    colors = colormap(rgb=True, maximum=255).astype(int).tolist()
    return [colors[i % len(colors)] for i in range(n)]


class ClassNames:
    """Names and colours of a model's classes from its dataset metadata (Mask2Former
    convention: ``stuff_classes`` lists every class, things first)."""

    def __init__(self, metadata, num_classes: int):
        self.all = list(metadata.get("stuff_classes", None) or metadata.get("thing_classes", None) or [])
        self.things = list(metadata.get("thing_classes", None) or [])
        colors = metadata.get("stuff_colors", None) or metadata.get("thing_colors", None)
        n = max(num_classes, len(self.all))
        self.colors = [list(map(int, c)) for c in colors] if colors and len(colors) >= n else _palette(n)

    def name(self, category_id: int, isthing: bool = False) -> str:
        if isthing and category_id < len(self.things):
            return self.things[category_id]
        if category_id < len(self.all):
            return self.all[category_id]
        return f"class {category_id}"

    def color(self, category_id: int) -> List[int]:
        return self.colors[category_id % len(self.colors)]


def _segment(seg_id, category_id, isthing, score, mask, names: ClassNames, color=None) -> Dict:
    return {
        "id": int(seg_id),
        "category_id": int(category_id),
        "class": names.name(int(category_id), bool(isthing)),
        "isthing": bool(isthing),
        "score": None if score is None else float(score),
        "area": int(mask.sum()),
        "bbox": _bbox(mask),
        "color": color if color is not None else names.color(int(category_id)),
        "mask": mask_to_rle(mask),
    }


def segmentation_to_json(outputs: Dict, names: ClassNames, thing_ids: Sequence[int]) -> Dict:
    """``DefaultPredictor`` outputs -> ``{"panoptic"|"semantic"|"instance": {"segments": [...]}}``.

    Panoptic: one entry per ``segments_info`` item, ``score`` from it. Semantic: one per class
    present in the argmax map, ``score`` = the mean ``sem_seg`` value of that class over its
    pixels. Instance: one per predicted instance with its score, highest first.
    """
    result = {}
    palette = _palette(256)
    if "panoptic_seg" in outputs:
        panoptic_seg, segments_info = outputs["panoptic_seg"]
        panoptic_seg = panoptic_seg.cpu().numpy()
        segments = []
        for k, info in enumerate(segments_info):
            isthing = info.get("isthing", int(info["category_id"]) in thing_ids)
            color = palette[k % len(palette)] if isthing else None
            segments.append(_segment(
                info["id"], info["category_id"], isthing, info.get("score"), panoptic_seg == info["id"], names, color,
            ))
        result["panoptic"] = {"segments": segments}
    if "sem_seg" in outputs:
        sem_seg = outputs["sem_seg"].cpu()
        labels = sem_seg.argmax(dim=0).numpy()
        values = sem_seg.numpy()
        segments = []
        for c in np.unique(labels).tolist():
            mask = labels == c
            segments.append(_segment(c + 1, c, c in thing_ids, values[c][mask].mean(), mask, names))
        result["semantic"] = {"segments": segments}
    if "instances" in outputs:
        instances = outputs["instances"].to("cpu")
        order = instances.scores.argsort(descending=True).tolist()
        masks = instances.pred_masks.numpy() if instances.has("pred_masks") else None
        segments = []
        for rank, i in enumerate(order):
            if masks is None:
                break
            c = int(instances.pred_classes[i])
            segments.append(_segment(
                rank + 1, c, True, float(instances.scores[i]), masks[i].astype(bool), names,
                palette[rank % len(palette)],
            ))
        result["instance"] = {"segments": segments}
    return result


# ---------------------------------------------------------------------------------------------
# models


class ModelRunner:
    """Runs model calls one at a time (a lock), with at most ``max_waiting`` calls waiting for it;
    one more is refused with ``ServerBusy`` rather than piling up."""

    def __init__(self, max_waiting: int = 8):
        self.max_waiting = int(max_waiting)
        self.lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.waiting = 0

    def run(self, fn):
        """``(fn(), seconds waited for the lock)``; ``ServerBusy`` when the queue is full."""
        with self._count_lock:
            if self.waiting >= self.max_waiting:
                raise ServerBusy()
            self.waiting += 1
        start = time.perf_counter()
        try:
            self.lock.acquire()
        finally:
            with self._count_lock:
                self.waiting -= 1
        queued = time.perf_counter() - start
        try:
            return fn(), queued
        finally:
            self.lock.release()


def model_info(cfg, config_file: str, kind: str) -> Dict:
    weights = cfg.MODEL.WEIGHTS
    info = {
        "kind": kind,
        "config_file": config_file,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "weights": weights or None,
        "random_init": not weights,
        "device": cfg.MODEL.DEVICE,
        "dataset": cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None,
    }
    if kind == "referring":
        info["mask_threshold"] = float(cfg.MODEL.RESTR.TEST.MASK_THRESHOLD)
        info["language_encoder"] = cfg.MODEL.RESTR.LANGUAGE.NAME
    else:
        info["num_classes"] = int(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
        if cfg.MODEL.META_ARCHITECTURE == "MaskFormer":
            info["object_mask_threshold"] = float(cfg.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD)
    return info


class SegmentationModel:
    """A ``DefaultPredictor`` and the names of its classes."""

    def __init__(self, cfg, config_file: str):
        from detectron2.data import MetadataCatalog
        from detectron2.engine import DefaultPredictor

        from predictor import instance_label_metadata

        self.cfg = cfg
        self.predictor = DefaultPredictor(cfg)
        metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused")
        num_classes = int(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
        self.names = ClassNames(instance_label_metadata(metadata, num_classes), num_classes)
        things = metadata.get("thing_classes", None) or []
        self.thing_ids = list(range(len(things))) if len(things) < len(self.names.all) else []
        self.info = model_info(cfg, config_file, "segmentation")
        self.info["classes"] = [
            {"id": c, "name": self.names.name(c), "color": self.names.color(c)} for c in range(num_classes)
        ]

    def __call__(self, image_bgr: np.ndarray) -> Dict:
        return segmentation_to_json(self.predictor(image_bgr), self.names, self.thing_ids)


class ReferringModel:
    """A ``ReferringPredictor``: sentences -> masks, scores and the tokens read."""

    def __init__(self, cfg, config_file: str):
        from restr_d2.engine.predictor import ReferringPredictor

        self.cfg = cfg
        self.predictor = ReferringPredictor(cfg)
        self.info = model_info(cfg, config_file, "referring")

    def check(self, sentences: Sequence[str]) -> List[Dict]:
        """The token descriptions; bad text -> ``UploadError`` 422 (before taking the lock)."""
        described = []
        for s in sentences:
            try:
                described.append(self.predictor.describe_tokens(s))
            except (ValueError, TypeError) as e:
                raise UploadError(422, f"Sentence {s!r} cannot be used: {e}") from None
        return described

    def __call__(self, image_bgr: np.ndarray, sentences: Sequence[str], described: Sequence[Dict]) -> List[Dict]:
        outputs = self.predictor(image_bgr, list(sentences))
        results = []
        for sentence, out, tokens in zip(sentences, outputs, described):
            mask = out["mask"].cpu().numpy().astype(bool)
            results.append({
                "sentence": sentence,
                "score": float(out["score"]),
                "area": int(mask.sum()),
                "bbox": _bbox(mask),
                "mask": mask_to_rle(mask),
                "tokens": tokens["tokens"],
                "unknown_words": [t["text"] for t in tokens["tokens"] if t["unknown"]],
                "truncated": tokens["truncated"],
            })
        return results


# ---------------------------------------------------------------------------------------------
# examples


class Examples:
    """Example images by id (``shapes-val-<k>``, ``skimage-<name>``), encoded as PNG once.
    Ids are looked up in this table; nothing the client sends is used as a path."""

    SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")

    def __init__(self):
        self.items: Dict[str, Dict] = {}
        self.notes: List[str] = []

    def add(self, example_id: str, title: str, rgb: np.ndarray, sentences=()):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
        self.items[example_id] = {
            "id": example_id, "title": title, "sentences": list(sentences),
            "png": buf.getvalue(), "width": int(rgb.shape[1]), "height": int(rgb.shape[0]),
        }

    def add_shapes(self, count: int, root: Optional[str] = None, shapes_config=None):
        """The first ``count`` images of the shapes val split (generated if needed under
        ``root`` / ``$DETECTRON2_DATASETS``) with their referring expressions."""
        from segmentation_core.data.refer import load_refer_json
        from segmentation_core.data.shapes import ensure_shapes
        from segmentation_core.data.shapes.cache import config_from_env

        dataset_dir = ensure_shapes(root, shapes_config or config_from_env(), progress=False)
        records = load_refer_json(os.path.join(dataset_dir, "refshapes"), "unc", "val",
                                  os.path.join(dataset_dir, "images"))
        sentences: Dict[str, List[str]] = {}
        for r in records:
            sentences.setdefault(r["file_name"], []).append(r["sentence"])
        for k, file_name in enumerate(sorted(sentences)[:count]):
            rgb = np.asarray(Image.open(file_name).convert("RGB"))
            self.add(f"shapes-val-{k}", f"shapes val {os.path.basename(file_name)}", rgb, sentences[file_name][:3])

    def add_skimage(self):
        try:
            import skimage.data
        except ImportError:
            self.notes.append("scikit-image is not installed: its example photos are not offered")
            return
        for name in self.SKIMAGE_PHOTOS:
            self.add(f"skimage-{name}", f"scikit-image {name}", getattr(skimage.data, name)())

    def listing(self) -> List[Dict]:
        return [{k: v for k, v in item.items() if k != "png"} | {"url": f"/examples/{item['id']}.png"}
                for item in self.items.values()]

    def image_bgr(self, example_id: str) -> np.ndarray:
        if example_id not in self.items:
            raise UploadError(404, f"Unknown example {example_id!r}; /api/info lists the examples.")
        return decode_upload(self.items[example_id]["png"], max_pixels=0)


# ---------------------------------------------------------------------------------------------
# app


class DemoService:
    """The models, the examples, the limits and the lock; no HTTP in here."""

    def __init__(self, segmentation: Optional[SegmentationModel] = None, referring: Optional[ReferringModel] = None,
                 examples: Optional[Examples] = None, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, max_queue: int = 8, max_sentences: int = 8,
                 confidence_threshold: Optional[float] = None):
        if segmentation is None and referring is None:
            raise ValueError("the demo needs a segmentation model, a referring model or both")
        self.segmentation = segmentation
        self.referring = referring
        self.examples = examples or Examples()
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_image_pixels = int(max_image_pixels)
        self.max_sentences = int(max_sentences)
        self.confidence_threshold = confidence_threshold
        self.runner = ModelRunner(max_queue)

    def info(self) -> Dict:
        return {
            "models": {k: m.info for k, m in (("segmentation", self.segmentation), ("referring", self.referring))
                       if m is not None},
            "examples": self.examples.listing(),
            "example_notes": self.examples.notes,
            "limits": {"max_upload_bytes": self.max_upload_bytes, "max_image_pixels": self.max_image_pixels,
                       "max_sentences": self.max_sentences, "max_queue": self.runner.max_waiting},
            "confidence_threshold": self.confidence_threshold,
        }

    def predict(self, image_bgr: np.ndarray, sentences: Sequence[str], models: Optional[Sequence[str]]) -> Dict:
        """Runs in a worker thread. ``models`` None: segmentation if loaded, referring if
        sentences are given."""
        if models is None:
            models = [m for m, on in (("segmentation", self.segmentation is not None),
                                      ("referring", bool(sentences))) if on]
        for m in models:
            if m not in ("segmentation", "referring"):
                raise UploadError(400, f"Unknown model {m!r} in 'models': use segmentation, referring or both.")
            if getattr(self, m) is None:
                raise UploadError(400, f"This server runs no {m} model (see /api/info).")
        if not models:
            raise UploadError(400, "Nothing to run: this server has only a referring model; give 'sentences'.")
        if "referring" in models and not sentences:
            raise UploadError(422, "The referring model needs a sentence naming the object (one per line in 'sentences').")
        if sentences and "referring" not in models:
            raise UploadError(400, "'sentences' were given but 'models' does not include referring.")
        described = self.referring.check(sentences) if "referring" in models else None

        def call():
            out = {}
            if "segmentation" in models:
                out["segmentation"] = self.segmentation(image_bgr)
            if "referring" in models:
                out["referring"] = self.referring(image_bgr, sentences, described)
            return out

        start = time.perf_counter()
        out, queued = self.runner.run(call)
        out["image"] = {"height": int(image_bgr.shape[0]), "width": int(image_bgr.shape[1])}
        out["timing"] = {"queued_seconds": round(queued, 4), "seconds": round(time.perf_counter() - start - queued, 4)}
        return out


class BodyLimitMiddleware:
    """Refuses request bodies above ``service.max_upload_bytes``: by ``Content-Length`` at
    once, else while streaming (``BodyTooLarge`` from ``receive``, a 413 from the endpoint)."""

    def __init__(self, app, service: "DemoService"):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        limit = self.service.max_upload_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            response = JSONResponse({"error": _too_large_message(int(length), limit)}, status_code=413,
                                    headers=SECURITY_HEADERS)
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        return await self.app(scope, limited_receive, send)


def _too_large_message(size: Optional[int], limit: int) -> str:
    size_text = f"is {size} bytes" if size is not None else "is larger than that"
    return (f"The upload {size_text}: this server's limit is {limit} bytes "
            f"({limit / 2**20:.1f} MiB, --max-upload-mb); upload a smaller image.")


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_app(service: DemoService) -> Starlette:
    async def page(request: Request):
        return FileResponse(os.path.join(PAGE_DIR, "index.html"), media_type="text/html", headers=SECURITY_HEADERS)

    async def static(request: Request):
        name = request.path_params["name"]
        if name not in STATIC_FILES:  # a fixed table: no client-given path reaches the disk
            return JSONResponse({"error": f"no static file {name!r}"}, status_code=404)
        return FileResponse(os.path.join(PAGE_DIR, name), media_type=STATIC_FILES[name], headers=SECURITY_HEADERS)

    async def info(request: Request):
        return JSONResponse(service.info(), headers=SECURITY_HEADERS)

    async def example_png(request: Request):
        item = service.examples.items.get(request.path_params["example_id"])
        if item is None:
            return JSONResponse({"error": "unknown example"}, status_code=404)
        return Response(item["png"], media_type="image/png", headers=SECURITY_HEADERS)

    async def predict(request: Request):
        try:
            try:
                form = await request.form(max_files=1, max_fields=8, max_part_size=64 * 1024)
            except BodyTooLarge:
                raise UploadError(413, _too_large_message(None, service.max_upload_bytes)) from None
            except HTTPException as e:
                raise UploadError(400, f"Malformed form data: {e.detail}") from None
            async with contextlib.AsyncExitStack() as stack:
                stack.push_async_callback(form.close)
                image = await _form_image(form)
                sentences = parse_sentences(_form_text(form, "sentences"), service.max_sentences)
                models_field = _form_text(form, "models").strip()
                models = [m.strip() for m in models_field.split(",") if m.strip()] if models_field else None
                result = await run_in_threadpool(service.predict, image, sentences, models)
            return JSONResponse(result, headers=SECURITY_HEADERS)
        except UploadError as e:
            return JSONResponse({"error": e.message}, status_code=e.status, headers=SECURITY_HEADERS)
        except ServerBusy:
            return JSONResponse(
                {"error": f"The server is busy ({service.runner.max_waiting} requests already wait for the "
                          "model); try again in a moment."},
                status_code=503, headers=dict(SECURITY_HEADERS, **{"Retry-After": "2"}),
            )

    async def _form_image(form):
        upload = form.get("image")
        example = _form_text(form, "example").strip()
        if isinstance(upload, UploadFile):
            if example:
                raise UploadError(400, "Give either an uploaded 'image' or an 'example' id, not both.")
            data = await upload.read()
            return await run_in_threadpool(decode_upload, data, max_pixels=service.max_image_pixels)
        if upload is not None:
            raise UploadError(400, "'image' must be a file upload (multipart/form-data, e.g. curl -F image=@photo.jpg).")
        if example:
            return service.examples.image_bgr(example)
        raise UploadError(400, "No image: upload one as 'image' (a file) or pick an 'example' id from /api/info.")

    def _form_text(form, key: str) -> str:
        value = form.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise UploadError(400, f"'{key}' must be a text field, not a file.")
        return value

    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=SECURITY_HEADERS)

    async def server_error(request: Request, exc: Exception):
        logger.exception("Unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"Internal error ({type(exc).__name__}); the server log has the details."},
                            status_code=500, headers=SECURITY_HEADERS)

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/info", info),
        Route("/examples/{example_id}.png", example_png),
        Route("/api/predict", predict, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.service = service
    return BodyLimitMiddleware(app, service)


# ---------------------------------------------------------------------------------------------
# command line


def get_parser():
    parser = argparse.ArgumentParser(
        description="restr-d2 web demo: referring segmentation and panoptic/semantic/instance segments in a browser",
    )
    parser.add_argument("--config-file", default=DEFAULT_CONFIG, metavar="FILE",
                        help=f"the segmentation model (DefaultPredictor); default {DEFAULT_CONFIG}")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY VALUE",
                        help="overrides of --config-file, e.g. MODEL.WEIGHTS model_final.pth")
    parser.add_argument("--referring-config-file", default=DEFAULT_REFERRING_CONFIG, metavar="FILE",
                        help=f"the referring model (ReferringPredictor); default {DEFAULT_REFERRING_CONFIG}")
    parser.add_argument("--referring-opts", nargs="*", default=[], metavar="KEY VALUE",
                        help="overrides of --referring-config-file, e.g. MODEL.WEIGHTS model_final.pth")
    parser.add_argument("--only", choices=("segmentation", "referring"),
                        help="load only this one of the two models")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 serves the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (0: any free port)")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
                        help="largest request body accepted, in MiB")
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                        help="largest image accepted, in pixels (width x height, read from the header)")
    parser.add_argument("--max-queue", type=int, default=8,
                        help="requests that may wait for the model; more get 503 'busy'")
    parser.add_argument("--max-sentences", type=int, default=8, help="sentences per request")
    parser.add_argument("--confidence-threshold", type=float, default=None,
                        help="initial position of the page's score slider (default: 0 for panoptic and "
                             "semantic, 0.5 for instances, as demo/demo.py)")
    parser.add_argument("--num-shapes-examples", type=int, default=6,
                        help="shapes val images offered as examples (generated under $DETECTRON2_DATASETS "
                             "if missing; 0: none)")
    parser.add_argument("--no-skimage-examples", action="store_true", help="do not offer scikit-image's photos")
    return parser


def build_models(args):
    """(SegmentationModel or None, ReferringModel or None) from the command line."""
    from segmentation_core.config import load_config
    from segmentation_core.config_checks import check_config
    from predictor import is_referring_config

    segmentation = referring = None
    if args.only != "referring":
        cfg = load_config(args.config_file, args.opts)
        if is_referring_config(cfg):
            raise SystemExit(
                f"--config-file {args.config_file} is a referring model ({cfg.MODEL.META_ARCHITECTURE}): "
                "pass it as --referring-config-file (with --referring-opts), and --only referring "
                "if there is no segmentation model"
            )
        check_config(cfg, check_weights=bool(cfg.MODEL.WEIGHTS))
        segmentation = SegmentationModel(cfg, args.config_file)
    if args.only != "segmentation":
        cfg = load_config(args.referring_config_file, args.referring_opts)
        if not is_referring_config(cfg):
            raise SystemExit(
                f"--referring-config-file {args.referring_config_file} is not a referring model "
                f"({cfg.MODEL.META_ARCHITECTURE}); pass it as --config-file"
            )
        check_config(cfg, check_weights=bool(cfg.MODEL.WEIGHTS))
        referring = ReferringModel(cfg, args.referring_config_file)
    for m in (segmentation, referring):
        if m is not None and m.info["random_init"]:
            logger.warning("%s: no MODEL.WEIGHTS, the %s model has random weights (its predictions are noise)",
                           m.info["config_file"], m.info["kind"])
    return segmentation, referring


def build_examples(num_shapes: int, skimage: bool, shapes_root: Optional[str] = None, shapes_config=None) -> Examples:
    examples = Examples()
    if num_shapes > 0:
        try:
            examples.add_shapes(num_shapes, shapes_root, shapes_config)
        except Exception as e:  # e.g. a read-only $DETECTRON2_DATASETS: the demo runs without them
            logger.warning("shapes examples unavailable: %s", e)
            examples.notes.append(f"shapes examples unavailable: {e}")
    if skimage:
        examples.add_skimage()
    return examples


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def make_server(app, log_level: str = "info"):
    """A uvicorn server for ``app``; start it with ``.run(sockets=[bind_socket(...)])``."""
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


def main(argv=None):
    from detectron2.utils.logger import setup_logger

    args = get_parser().parse_args(argv)
    setup_logger(name="restr_d2")
    setup_logger(name="fvcore")
    segmentation, referring = build_models(args)
    examples = build_examples(args.num_shapes_examples, not args.no_skimage_examples)
    service = DemoService(
        segmentation, referring, examples,
        max_upload_bytes=int(args.max_upload_mb * 2**20), max_image_pixels=args.max_image_pixels,
        max_queue=args.max_queue, max_sentences=args.max_sentences,
        confidence_threshold=args.confidence_threshold,
    )
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("--host %s: the demo is reachable from other machines; it has no authentication", args.host)
    shown = f"[{host}]" if ":" in host else host
    logger.info("restr-d2 web demo on http://%s:%d (Ctrl-C stops it)", shown, port)
    print(f"restr-d2 web demo: http://{shown}:{port}", flush=True)
    make_server(create_app(service)).run(sockets=[sock])


if __name__ == "__main__":
    main()
