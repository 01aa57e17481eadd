"""MODEL.VIT.FEATURE_CACHE_MB: the frozen ViT's per-image features memoised (issue 18)."""
import logging

import pytest
import torch

from restr_d2.modeling.backbone import VisionTransformer
from restr_d2.modeling.backbone.feature_cache import FrozenFeatureCache
from restr_d2.modeling.restr import ReSTR

from tests.restr_d2.restr.test_restr_model import _batched


def _counting(fn):
    calls = []

    def wrapped(x):
        calls.append(x.shape[0])
        return fn(x)

    return wrapped, calls


def _vit():
    torch.manual_seed(0)
    return VisionTransformer(image_size=(32, 32), patch_size=8, embed_dim=32, depth=2, num_heads=2,
                             num_classes=0, freeze=True)


def test_cache_returns_the_encoder_output_and_runs_each_image_once():
    vit = _vit()
    fn, calls = _counting(vit.forward_features)
    cache = FrozenFeatureCache(fn, max_bytes=1 << 20)
    a, b, c = torch.randn(3, 3, 32, 32)
    first = cache(torch.stack([a, b]))
    # per image, one at a time: the same numbers as the encoder run on each image alone
    assert torch.equal(first[0], vit.forward_features(a[None])[0])
    assert torch.equal(first[1], vit.forward_features(b[None])[0])
    assert torch.allclose(first, vit.forward_features(torch.stack([a, b])), atol=1e-5)
    assert calls == [1, 1] and (cache.hits, cache.misses, len(cache)) == (0, 2, 2)
    # b again (a new tensor with equal bytes) and a new c: only c runs
    again = cache(torch.stack([c, b.clone()]))
    assert calls == [1, 1, 1] and (cache.hits, cache.misses) == (1, 3)
    assert torch.equal(again[1], first[1])
    assert torch.equal(again[0], vit.forward_features(c[None])[0])
    # one changed pixel is another image
    d = b.clone()
    d[0, 0, 0] += 1e-3
    cache(d[None])
    assert cache.misses == 4 and not again.requires_grad
    # so are another dtype and the same bytes under autocast
    cache(b.double()[None].float())  # equal values: a hit
    assert cache.misses == 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cache(b[None])
    assert cache.misses == 5


def test_cache_stops_growing_at_its_budget_and_logs_it_once(caplog):
    vit = _vit()
    per_image = 17 * 32 * 4  # (T + N) x D float32
    fn, calls = _counting(vit.forward_features)
    cache = FrozenFeatureCache(fn, max_bytes=2 * per_image, name="ViT")
    images = torch.randn(4, 3, 32, 32)
    with caplog.at_level(logging.INFO, logger="restr_d2.modeling.backbone.feature_cache"):
        out = cache(images)
        cache(images)
    assert len(cache) == 2 and cache.nbytes == 2 * per_image
    # the first two images are cached; the last two run every time, with the right numbers
    assert calls == [1] * 6
    assert torch.equal(out[3], vit.forward_features(images[3:4])[0])
    full = [r for r in caplog.records if "feature cache full" in r.getMessage()]
    assert len(full) == 1 and "MODEL.VIT.FEATURE_CACHE_MB" in full[0].getMessage()
    with pytest.raises(ValueError, match="positive"):
        FrozenFeatureCache(fn, max_bytes=0)


def test_cache_of_several_inputs_keys_on_every_input_row(caplog):
    """Token ids and attention mask (B, T) each: one sample is row b of both."""
    calls = []

    def encode(ids, mask):
        calls.append(ids.shape[0])
        return (ids * mask).float()[..., None].expand(-1, -1, 4) + ids.shape[0]

    cache = FrozenFeatureCache(encode, max_bytes=3 * 5 * 4 * 4, name="language", config_key="MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB")
    ids = torch.tensor([[1, 2, 3, 0, 0], [1, 2, 3, 0, 0], [4, 5, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 0, 0, 0]])
    out = cache(ids, mask)
    # rows 0 and 1 share their ids but not their mask: two samples; each ran alone
    assert calls == [1, 1, 1] and (cache.misses, cache.hits) == (3, 0)
    assert torch.equal(out, (ids * mask).float()[..., None].expand(-1, -1, 4) + 1)
    assert torch.equal(cache(ids[1:], mask[1:]), out[1:]) and cache.hits == 2
    with caplog.at_level(logging.INFO, logger="restr_d2.modeling.backbone.feature_cache"):
        cache(ids[:1] + 10, mask[:1])
    assert len(cache) == 3 and cache.misses == 4
    assert any("MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="agree in size"):
        cache(ids, mask[:2])
    with pytest.raises(ValueError, match="no inputs"):
        cache()


def _frozen_cfg(small, cache_mb):
    cfg = small.cfg()
    cfg.MODEL.VIT.FREEZE = True
    cfg.MODEL.VIT.FEATURE_CACHE_MB = cache_mb
    return cfg


def test_restr_with_the_cache_gives_the_same_outputs_losses_and_gradients(small):
    plain = ReSTR(_frozen_cfg(small, 0))
    cached = ReSTR(_frozen_cfg(small, 64))
    cached.load_state_dict(plain.state_dict())
    assert plain.feature_cache is None and cached.feature_cache is not None
    images = small.fx["images"]
    sentences = small.fx["keys"]["sentences"][:2]
    plain.eval(), cached.eval()
    with torch.no_grad():
        ref = plain.predict(images, sentences)
        for _ in range(2):  # a miss, then a hit
            out = cached.predict(images, sentences)
            assert torch.allclose(out["pixel_logits"], ref["pixel_logits"], atol=1e-5, rtol=1e-5)
    assert (cached.feature_cache.misses, cached.feature_cache.hits) == (2, 2)
    # training: the frozen ViT takes no gradient either way, the fusion gets the same one
    plain.train(), cached.train()
    torch.manual_seed(0)
    loss_plain = sum(plain(_batched(small)).values())
    torch.manual_seed(0)
    loss_cached = sum(cached(_batched(small)).values())
    assert torch.allclose(loss_plain, loss_cached, atol=1e-5)
    loss_plain.backward(), loss_cached.backward()
    for (name, p), q in zip(plain.named_parameters(), cached.parameters()):
        if name.startswith("encoder_v."):
            assert p.grad is None and q.grad is None
        elif p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-4), name
    assert cached.feature_cache.hits == 4
    # nothing new in the state dict
    assert set(cached.state_dict()) == set(plain.state_dict())
    # loading weights empties the cache: features of the old ViT would be silently stale
    assert len(cached.feature_cache) == 2
    cached.load_state_dict(plain.state_dict())
    assert len(cached.feature_cache) == 0 and cached.feature_cache.nbytes == 0


def test_cache_without_a_frozen_vit_is_refused_with_the_fix(small):
    cfg = _frozen_cfg(small, 64)
    cfg.MODEL.VIT.FREEZE = False
    with pytest.raises(ValueError, match=r"FEATURE_CACHE_MB=64 needs a frozen vision encoder.*MODEL.VIT.FREEZE True"):
        ReSTR(cfg)
