"""Peer SimCLR train step: torchvision ResNet-18 (CIFAR stem) + lightly SimCLRProjectionHead
(512-512-128) + NTXentLoss(T=0.5), SGD momentum 0.9 wd 5e-4, on random [B, 3, 32, 32] views.

    python torch_simclr_step.py --batch 128 --threads 2 [--bf16]

Prints ``... ms/step, X img/s (2X views/s)``, the median-free mean of 5 steps after 2
warm-up steps. Exits 3 when torch, torchvision or lightly is missing (run
``bash scripts/setup_peers.sh torch``). Runs outside jaxssl: imports no jaxssl code.
"""
import argparse
import sys
import time

NOT_INSTALLED_EXIT = 3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bf16", action="store_true", help="forward under torch.autocast(bfloat16)")
    p.add_argument("--steps", type=int, default=5)
    a = p.parse_args()
    try:
        import torch
        import torchvision
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead
        from torch import nn
    except ImportError as e:
        print(f"peer not installed: {e}")
        sys.exit(NOT_INSTALLED_EXIT)

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    backbone = torchvision.models.resnet18()
    backbone.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    backbone.maxpool = nn.Identity()
    backbone.fc = nn.Identity()
    model = nn.Sequential(backbone, SimCLRProjectionHead(512, 512, 128))
    criterion = NTXentLoss(temperature=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    b = a.batch
    x0, x1 = torch.randn(b, 3, 32, 32), torch.randn(b, 3, 32, 32)

    def step():
        if a.bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                z0, z1 = model(x0), model(x1)
            z0, z1 = z0.float(), z1.float()
        else:
            z0, z1 = model(x0), model(x1)
        loss = criterion(z0, z1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = (time.perf_counter() - t) / a.steps
    flop = 2 * b * 3 * 2 * 0.5555e9  # 2 views x (fwd + 2x bwd) x 2 FLOP/MAC x 0.5555 GMAC
    tag = "[bf16 autocast] " if a.bf16 else ""
    print(f"{tag}torch {torch.__version__} simclr resnet18-cifar B={b}: {dt * 1e3:.0f} ms/step, "
          f"{b / dt:.1f} img/s ({2 * b / dt:.1f} views/s), ~{flop / dt / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
