import pytest
import torch
from torch import nn

from secbench.data.base import ImageSet
from secbench.engine import TrainConfig, accuracy, augment_batch, fit, seed_everything, select_device
from secbench.errors import SecbenchError, TrainingDiverged

CPU = torch.device("cpu")


def _toy_data(n: int = 256, seed: int = 0) -> ImageSet:
    """Two classes that differ in brightness of the left half: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = torch.randint(0, 100, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    images[labels == 1, :, :, :4] += 120
    return ImageSet(images, labels)


def _toy_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, 2))


def _train(seed: int, augment=("crop", "flip")) -> tuple[dict, float, torch.Tensor]:
    generator = seed_everything(seed)
    model = _toy_model()
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, augment=augment, crop_pad=1)
    history = fit(model, _toy_data(), cfg, generator=generator, device=CPU)
    return history, accuracy(model, _toy_data(seed=1), device=CPU), model[0].weight.detach().clone()


def test_same_seed_gives_identical_training():
    h1, acc1, w1 = _train(0)
    h2, acc2, w2 = _train(0)
    assert h1["loss"] == h2["loss"] and acc1 == acc2
    assert torch.equal(w1, w2)
    h3, _, w3 = _train(1)
    assert h3["loss"] != h1["loss"] and not torch.equal(w1, w3)


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.05), ("adam", 0.01), ("adamw", 0.01)])
def test_training_learns_the_toy_task(optimizer, lr):
    model = _toy_model()
    cfg = TrainConfig(epochs=10, batch_size=32, lr=lr, optimizer=optimizer, augment=())
    history = fit(model, _toy_data(), cfg, generator=seed_everything(0), device=CPU)
    assert history["loss"][-1] < history["loss"][0]
    assert accuracy(model, _toy_data(seed=1), device=CPU) > 0.9


def test_lr_scale_multiplies_the_step_of_matching_parameters_only():
    def first_step(lr_scale) -> tuple[dict[str, torch.Tensor], list[float]]:
        torch.manual_seed(0)
        model = _toy_model()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        cfg = TrainConfig(epochs=1, batch_size=256, lr=0.05, momentum=0.0, weight_decay=0.0, schedule="constant",
                          augment=(), precise_bn=0, lr_scale=lr_scale)
        history = fit(model, _toy_data(), cfg, generator=seed_everything(0), device=CPU)
        return {k: v - before[k] for k, v in model.state_dict().items()}, history["lr"]

    plain, plain_lr = first_step(())
    scaled, scaled_lr = first_step((("0.", 3.0), ("0.bias", 0.5)))  # the first matching prefix wins
    torch.testing.assert_close(scaled["0.weight"], 3 * plain["0.weight"])
    torch.testing.assert_close(scaled["0.bias"], 3 * plain["0.bias"])
    torch.testing.assert_close(scaled["4.weight"], plain["4.weight"])
    assert float(plain["0.weight"].abs().max()) > 1e-4
    assert plain_lr == scaled_lr == [0.05]  # the history keeps the base rate
    with pytest.raises(SecbenchError, match="positive"):
        TrainConfig(lr_scale=(("0.", 0.0),))


def test_flip_and_crop_are_per_sample_and_exact():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    flipped = [augment_batch(x, ["flip"], g) for _ in range(20)]
    for out in flipped:  # every sample is either itself or its mirror image
        for i in range(2):
            assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    assert any(not torch.equal(out[0], x[0]) for out in flipped)
    cropped = augment_batch(x, ["crop"], g, pad=1)
    assert cropped.shape == x.shape
    # a crop is a translation of the reflect-padded image: each output row is a shifted input row
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    for i in range(2):
        windows = [padded[i, :, dy:dy + 4, dx:dx + 4] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(cropped[i], w) for w in windows)


def test_paired_targets_get_the_same_transform():
    x = torch.rand(16, 3, 8, 8)
    both = augment_batch(torch.cat([x, x], 1), ["crop", "flip"], torch.Generator().manual_seed(3), pad=2)
    assert torch.equal(both[:, :3], both[:, 3:])
    assert not torch.equal(both[:, :3], x)


def test_image_to_image_fit_uses_targets():
    data = _toy_data(64)
    targets = 255 - data.images  # learn to invert
    model = nn.Conv2d(3, 3, 1)
    cfg = TrainConfig(epochs=40, batch_size=16, lr=0.05, optimizer="adam", schedule="constant", augment=("flip",))
    history = fit(model, data, cfg, generator=seed_everything(0), device=CPU, targets=targets,
                  loss_fn=nn.functional.mse_loss)
    assert history["loss"][-1] < history["loss"][0] / 20


def test_nan_loss_stops_with_a_clear_error():
    model = _toy_model()
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1, step 1"):
        fit(model, _toy_data(), TrainConfig(epochs=1), generator=seed_everything(0), device=CPU)


@pytest.mark.parametrize("bad", [{"schedule": "linear"}, {"optimizer": "lbfgs"}, {"augment": ("mixup",)},
                                 {"epochs": 0}])
def test_invalid_train_config_is_a_user_error(bad):
    with pytest.raises(SecbenchError):
        TrainConfig(**bad)


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(SecbenchError):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SecbenchError, match="no CUDA device"):
            select_device("cuda")


def test_precise_bn_replaces_stale_running_statistics():
    """After fit, BatchNorm's running mean is the average over un-augmented training batches, not a
    momentum trace of the first steps (which is what breaks short CPU runs of MicroNet in eval mode)."""
    data = _toy_data(256)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.01, augment=(), precise_bn=8)  # 8 x 32 = the whole set
    fit(model, data, cfg, generator=seed_everything(0), device=CPU)
    with torch.no_grad():
        conv_out = model[0](data.floats())
    torch.testing.assert_close(model[1].running_mean, conv_out.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert model[1].momentum == 0.1 and not model.training


def test_fit_follows_the_sampler_and_checks_its_length():
    """A sampler fixes each epoch's order (here: reversed); a custom loss leaves the accuracy undefined."""
    data = _toy_data(64)
    seen = []

    class Recorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3 * 8 * 8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.detach().clone())
            return self.linear(x.flatten(1))

    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.01, augment=(), precise_bn=0)
    history = fit(Recorder(), data, cfg, generator=seed_everything(0), device=CPU, loss_fn=nn.functional.cross_entropy,
                  sampler=lambda g: torch.arange(64).flip(0))
    assert torch.equal(torch.cat(seen), data.floats().flip(0))
    assert len(history["acc"]) == 1 and history["acc"][0] != history["acc"][0]  # NaN
    with pytest.raises(ValueError, match="64 indices"):
        fit(Recorder(), data, cfg, generator=seed_everything(0), device=CPU, sampler=lambda g: torch.arange(10))
