"""MODEL.VIT.FREEZE: a pretrained ViT used as a fixed feature extractor (issue 18)."""
import torch

from restr_d2.modeling.backbone import D2PlainViT, VisionTransformer
from segmentation_core.engine.optimizer import get_param_groups

KW = dict(image_size=(32, 32), patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0,
          dropout=0.5, drop_path_rate=0.5)


def test_frozen_vit_has_no_trainable_parameter_and_stays_in_eval_mode():
    torch.manual_seed(0)
    vit = VisionTransformer(freeze=True, **KW)
    assert not any(p.requires_grad for p in vit.parameters())
    parent = torch.nn.Sequential(vit, torch.nn.Identity()).train()
    assert parent.training and not vit.training
    assert not any(m.training for m in vit.modules())
    x = torch.randn(2, 3, 32, 32)
    # dropout 0.5 and drop path 0.5 would make two training-mode calls differ
    a, b = vit.forward_features(x), vit.forward_features(x)
    assert torch.equal(a, b) and not a.requires_grad
    # the unfrozen twin with the same weights: same numbers in eval mode, random in train mode
    twin = VisionTransformer(**KW)
    twin.load_state_dict(vit.state_dict())
    assert twin.eval() and torch.equal(twin.forward_features(x), a)
    twin.train()
    assert not torch.equal(twin.forward_features(x), a)
    assert all(p.requires_grad for p in twin.parameters())


def test_optimizer_groups_skip_the_frozen_vit_and_a_step_leaves_it_unchanged():
    torch.manual_seed(0)
    vit = D2PlainViT(freeze=True, **KW)
    head = torch.nn.Conv2d(32, 3, 1)
    model = torch.nn.ModuleDict({"backbone": vit, "head": head}).train()
    groups = get_param_groups(model, base_lr=0.1, weight_decay=0.0, backbone_multiplier=0.1)
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert in_groups == {id(p) for p in head.parameters()}
    opt = torch.optim.SGD(groups, lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logits = head(vit(torch.randn(2, 3, 32, 32))["vit"])
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 3, (2, 4, 4))).backward()
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert all(p.grad is None for p in vit.parameters())
