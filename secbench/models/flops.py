"""Parameter and multiply-accumulate counts, in the papers' convention (1 MAdd = 1 MAC).

``FlopCounterMode`` counts 2 FLOPs per multiply-accumulate of conv, linear and matmul (BatchNorm
and elementwise ops count 0), so MACs are its total ÷ 2. On CPU it misses
``F.scaled_dot_product_attention``, which dispatches to a kernel absent from its table; the
mapping below counts that kernel like the other attention kernels.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

_aten = torch.ops.aten


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_size: int | tuple[int, int] = 224, batch: int = 1) -> int:
    """MACs of one eval-mode forward pass on a ``(batch, 3, H, W)`` input."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    was_training = model.training
    model.eval()
    mapping = {}
    if hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[_aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(torch.zeros(batch, 3, h, w))
    model.train(was_training)
    return counter.get_total_flops() // 2
