import os

# On a shared machine, OpenMP threads that spin-wait for descheduled peers make torch ops 10-50x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def randomize_bn(model: torch.nn.Module) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms so folding is really exercised."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.fixture(scope="session")
def fmnist_checkpoint(tmp_path_factory):
    """``best.pt`` of HSNet (10 classes, 32x32) trained briefly on real Fashion-MNIST through hsnet.training.

    3000 class-balanced training images, 2 epochs, seed 0; evaluated on 2000 test images (81.5 % top-1 here, far
    above the 10 % of chance). The run folder (metrics.jsonl, curves, confusion) is the checkpoint's parent.
    """
    from hsnet.training import fit, make_config

    config = make_config(
        "fashion-quick",
        model="hsnet",
        input_size=32,
        epochs=2,
        subset=3000,
        test_subset=2000,
        batch_size=64,
        lr=0.05,
        warmup_epochs=0.2,
        augment=False,  # two epochs are too few to profit from augmentation
        seed=0,
    )
    result = fit(config, tmp_path_factory.mktemp("fmnist-hsnet"), show_progress=False)
    return result.best_checkpoint
