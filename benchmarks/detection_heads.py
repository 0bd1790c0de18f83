"""Why DyHead lags the GN towers at ``quick``: the signal each head passes back at initialisation.

Builds the ``quick`` ATSS detector twice from the same seed (same backbone and FPN weights), once with
each head, and on one batch of the embedded ``objects`` set prints side by side: the loss, the
gradient norm that reaches the backbone, the FPN, the head's body and its predictors, and the spread
(std) of the features the predictors read, with the DyHead / towers ratio of each. Seconds on a CPU.

    python benchmarks/detection_heads.py [--blocks 2] [--channels 64] [--batch 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable

import torch

from secbench.data.detection import load_detection
from secbench.models.detector import atss_loss
from secbench.registry import create


def grad_norm(parameters: Iterable[torch.nn.Parameter]) -> float:
    return sum(p.grad.square().sum().item() for p in parameters if p.grad is not None) ** 0.5


def measure(head: str, images: torch.Tensor, labels: torch.Tensor, num_classes: int, args: argparse.Namespace
            ) -> dict[str, float]:
    torch.manual_seed(args.seed)
    model = create("detector", "atss", backbone="resnet18", num_classes=num_classes, img_size=images.shape[-1],
                   head=head, dyhead_blocks=args.blocks, channels=args.channels, anchor_scale=8.0)
    model.train()
    read: list[list[torch.Tensor]] = []  # the classification features the predictors see, whichever head
    model.head.predict.register_forward_pre_hook(lambda _, inputs: read.append(inputs[0]))
    loss = atss_loss(model(images), labels)
    loss.backward()
    body = (p for name, p in model.head.named_parameters() if not name.startswith("predict."))
    spread = torch.cat([f.detach().flatten() for f in read[0]]).std()
    return {"loss": loss.item(), "grad backbone": grad_norm(model.backbone.parameters()),
            "grad FPN": grad_norm(model.fpn.parameters()), "grad head body": grad_norm(body),
            "grad predictors": grad_norm(model.head.predict.parameters()), "std of predictor input": spread.item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2, help="DyHead blocks (quick 2, paper 6)")
    parser.add_argument("--channels", type=int, default=64, help="FPN and head width (quick 64, paper 256)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_detection("objects", seed=args.seed, n_train=args.batch, n_test=1, img_size=128)
    images, labels = data.train.images.float() / 255, data.train.labels
    towers, dyhead = (measure(h, images, labels, data.num_classes, args) for h in ("towers", "dyhead"))
    print(f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}; one batch of {args.batch}, seed {args.seed}, "
          f"{args.channels} channels, {args.blocks} DyHead blocks, at initialisation")
    print(f"{'':24s} {'towers':>10s} {'dyhead':>10s} {'dyhead / towers':>16s}")
    for name in towers:
        print(f"{name:24s} {towers[name]:10.4g} {dyhead[name]:10.4g} {dyhead[name] / towers[name]:16.3f}")


if __name__ == "__main__":
    main()
