"""MobileNetV3-Small, torchvision's implementation adapted to small inputs; the low-MAC papers' baseline.

Howard, Sandler, Chu, Chen, Chen, Tan, Wang, Zhu, Pang, Vasudevan, Le, Adam, "Searching for
MobileNetV3", ICCV 2019, arXiv 1905.02244. The blocks, widths, init and head are torchvision's
``mobilenet_v3_small(weights=None)`` (no pretrained weights are ever loaded), with two changes.

BatchNorm momentum 0.1 (PyTorch's default) instead of torchvision's 0.01 (TensorFlow's, tuned for
long ImageNet schedules): secbench trains for a few hundred steps, too few for running statistics
that move 1% per step. Measured on ``digits`` after 120 SGD steps: eval-mode test accuracy 0.10
with momentum 0.01 (0.98 with the batch's own statistics), 0.98 with momentum 0.1.

Stride-1 stem for small inputs: torchvision's network downsamples 32× (the stride-2 stem, then four
stride-2 blocks). On a 32×32 image the stem already leaves 16×16, the 40-channel stage runs at 2×2
and the 96-channel stage and the 576-channel last conv at 1×1, where the 5×5 depthwise kernels see
almost only zero padding. For ``img_size <= 64`` we therefore set the stem conv's stride to 1 (total
stride 16: the last stage runs at 2×2 for 32×32 inputs and 4×4 for 64×64) and keep every other
stride. This is the usual CIFAR stem change (kuangliu/pytorch-cifar does the same to MobileNetV2,
plus one more stride-1 stage); mmpretrain's ``mobilenet_v3_small_cifar`` config keeps the ImageNet
strides instead. The price is 2.5× the MACs of the unmodified network at the same input: 5.5M vs
2.2M MACs at 32×32, 18.8M at 64×64 (measured with ``torch.utils.flop_counter``; the unmodified
network gives the paper's 56M at 224×224). Larger inputs keep the ImageNet stem.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from secbench.models.layers import ConvClassifier, stem_stride
from secbench.models.recipe import Recipe, add_recipe
from secbench.registry import register

__all__ = ["MobileNetV3", "mobilenet_v3_small"]

class MobileNetV3(ConvClassifier):
    """torchvision's MobileNetV3-Small rearranged into the secbench surface.

    ``stages`` is torchvision's ``features``; ``pre_logits`` is its hidden head layer
    ``Linear(576, 1024) → Hardswish → Dropout(0.2)``; ``classifier`` is the final ``Linear(1024, num_classes)``,
    so ``features`` has ``D = 1024``. ``last_conv`` is ``features[-1]``, the 1×1 conv 96 → 576 with
    BN and Hardswish: its 576 channels (not ``D``) are the ones Fine-Pruning ranks and prunes.

    Args:
        num_classes: number of logits.
        img_size: input side; ``<= 64`` gives the stride-1 stem.
        mean, std: per-channel statistics for the in-model :class:`~secbench.models.layers.Normalize`.

    Shape: ``(N, 3, H, W)`` float in [0, 1] → ``(N, num_classes)`` logits.
    """

    def __init__(
        self, *, num_classes: int, img_size: int, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> None:
        # Imported here, not at the top: torchvision.models takes 1-2 s to import and only this family needs it,
        # while importing secbench.models (which registers every family) should stay cheap.
        from torchvision.models import mobilenet_v3_small as tv_mobilenet_v3_small

        norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.1)  # momentum: see the module docstring
        net = tv_mobilenet_v3_small(weights=None, num_classes=num_classes, norm_layer=norm_layer)
        stride = stem_stride(img_size)
        net.features[0][0].stride = (stride, stride)
        super().__init__(net.features, net.classifier[-1], mean=mean, std=std, pre_logits=net.classifier[:-1])


@register("model", "mobilenet-v3-small")
def mobilenet_v3_small(
    *,
    num_classes: int,
    img_size: int = 32,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> MobileNetV3:
    """MobileNetV3-Small (1905.02244), BN momentum 0.1, stride-1 stem for inputs ≤ 64 px: 1,528,106 params (10 classes), 5.5M MACs at 32×32."""
    return MobileNetV3(num_classes=num_classes, img_size=img_size, mean=mean, std=std)

# torchvision's MobileNetV3 reference recipe is RMSprop over 600 epochs; CIFAR re-implementations use SGD.
add_recipe(Recipe("sgd", lr=0.1, weight_decay=4e-5, schedule="cosine", warmup=0.1, batch_size=64,
                  train_images=100_000,
                  source="SGD/cosine (CIFAR practice for MobileNetV3; the paper's RMSprop needs far longer)"),
           "mobilenet-v3-small")
