"""Helpers of the web demo tests: the running server (``DemoServer``), multipart encoding,
the seeded reference predictor. The server itself is the ``web_demo`` fixture (conftest.py).

A running web demo (``demo/web.py``) for the API and browser tests:

One server per test session, in this process (uvicorn in a thread, on a free port of
127.0.0.1), serving two tiny models from ``configs/shapes``: the ReSTR with random weights
saved to a file (``MODEL.WEIGHTS``), and the Mask2Former with no weights at all (random
initialisation under a fixed seed). The tests build their own ``ReferringPredictor`` /
``DefaultPredictor`` with the same weights and compare masks; no training anywhere.
"""
import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
SEG_CONFIG = "configs/shapes/mask2former_R18_panoptic.yaml"
REF_CONFIG = "configs/shapes/restr_shapes.yaml"
SEG_SEED = 1234


@dataclass
class DemoServer:
    url: str
    service: object
    seg_cfg: object
    ref_cfg: object
    images: list  # paths of the generated shapes val images
    weights: str

    def post(self, fields=None, files=None, headers=None, timeout=60):
        """multipart POST to /api/predict -> (status, JSON body)."""
        body, content_type = encode_multipart(fields or {}, files or {})
        request = urllib.request.Request(self.url + "/api/predict", data=body, method="POST",
                                         headers={"Content-Type": content_type, **(headers or {})})
        return open_json(request, timeout)

    def get(self, path, timeout=30):
        return open_json(urllib.request.Request(self.url + path), timeout)


def open_json(request, timeout):
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def encode_multipart(fields, files):
    """``fields``: name -> str; ``files``: name -> (filename, bytes)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                     + value.encode() + b"\r\n")
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def save_random_weights(cfg, path):
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    model = build_model(cfg)
    torch.save({"model": model.state_dict()}, path)


def seeded_default_predictor(cfg):
    """``DefaultPredictor`` with the random initialisation the server's model got."""
    from detectron2.engine import DefaultPredictor

    torch.manual_seed(SEG_SEED)
    return DefaultPredictor(cfg)
