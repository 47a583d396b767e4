"""Any timm model as a redshift regressor: `in_chans` bands, one output, head from its config."""

from __future__ import annotations

from pathlib import Path

import timm

from zpeft.backbones.regressor import Regressor


def timm_regressor(model_name: str, in_chans: int = 5, img_size: int = 64, weights: str | None = None) -> Regressor:
    """timm model `model_name` with one output; `weights` is a local checkpoint (no downloads here)."""
    if not timm.is_model(model_name):
        raise KeyError(f"timm has no model {model_name!r}; see `zpeft list backbones 'timm/*pattern*'`")
    kwargs = dict(in_chans=in_chans, num_classes=1)
    if weights is not None:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"timm weights {weights!r} not found; pretrained weights must be on local disk")
        # timm adapts the stem to in_chans and resets the classifier for num_classes=1.
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)))
    try:
        # ViT-like models size their position embeddings from img_size; CNNs take no such argument.
        net = timm.create_model(model_name, img_size=img_size, **kwargs)
    except TypeError as err:
        if "img_size" not in str(err):
            raise
        net = timm.create_model(model_name, **kwargs)
    head = net.pretrained_cfg.get("classifier")
    if not head:
        raise ValueError(f"timm model {model_name!r} names no classifier in its pretrained_cfg; cannot find its head")
    return Regressor(net, head_names=[head] if isinstance(head, str) else list(head), name=f"timm/{model_name}")

