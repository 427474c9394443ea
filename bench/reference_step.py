"""The yardstick for bench/step.py --reference: an audio-visual late-fusion training step written the
plain way, with no latefusion code, as someone would write it by hand for one GPU.

Two ResNet18 encoders (the torchvision architecture, written out here so that neither the core install
nor this benchmark needs torchvision: same layers, same 11.2 M parameters per encoder as torchvision's
resnet18 without its classifier), a concatenation head, cross-entropy, SGD with momentum, the
caller's autocast and memory format. `umt` adds the distillation loss on teacher features, computed by
two frozen teacher encoders (`live`) or given (`cached`). The loss is never read back to the host.

An external reference written with torchvision's resnet18 can be timed beside it:
bench/gpu_check.sh runs the script named by REFERENCE=path as it is, when torchvision is installed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_bn(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(*conv_bn(cin, cout, 3, stride), nn.ReLU(inplace=True), *conv_bn(cout, cout, 3, 1))
        self.skip = nn.Sequential(*conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.branch(x) + self.skip(x))


def resnet18(in_channels: int) -> nn.Sequential:
    """(N, C, H, W) -> (N, 512)."""
    layers: list[nn.Module] = [*conv_bn(in_channels, 64, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for i, cout in enumerate((64, 128, 256, 512)):
        layers += [Block(cin, cout, 1 if i == 0 else 2), Block(cout, cout, 1)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class AudioVisual(nn.Module):
    """Spectrogram (N, 1, F, T) and frames (N, T, 3, H, W) -> per-modality features, each (N, 512)."""

    def __init__(self) -> None:
        super().__init__()
        self.audio, self.visual = resnet18(1), resnet18(3)

    def forward(self, audio: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        visual = self.visual(frames.flatten(0, 1)).view(frames.shape[0], frames.shape[1], -1).mean(1)
        return self.audio(audio), visual


class ReferenceStep:
    """`step()` trains on one fixed batch; `kind` is naive, umt-live or umt-cached."""

    def __init__(self, kind: str, batch: tuple[Tensor, Tensor, Tensor], classes: int, device: torch.device,
                 memory_format: torch.memory_format, autocast) -> None:
        self.kind, self.autocast = kind, autocast
        self.audio, self.frames, self.labels = batch
        self.encoders = AudioVisual().to(device, memory_format=memory_format)
        self.head = nn.Linear(1024, classes).to(device)
        params = [*self.encoders.parameters(), *self.head.parameters()]
        self.teachers = AudioVisual().to(device, memory_format=memory_format).eval().requires_grad_(False) if kind == "umt-live" else None
        self.cached = [torch.randn(len(self.labels), 512, device=device) for _ in range(2)] if kind == "umt-cached" else None
        self.projections = nn.ModuleList(nn.Linear(512, 512) for _ in range(2)).to(device) if kind != "naive" else None
        if self.projections is not None:
            params += list(self.projections.parameters())
        self.optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

    def step(self) -> None:
        if self.teachers is not None:
            with torch.no_grad(), self.autocast():
                targets = self.teachers(self.audio, self.frames)
        else:
            targets = self.cached
        with self.autocast():
            features = self.encoders(self.audio, self.frames)
            loss = F.cross_entropy(self.head(torch.cat(features, 1)), self.labels)
            if self.projections is not None:
                for projection, feature, target in zip(self.projections, features, targets):
                    loss = loss + F.mse_loss(projection(feature).float(), target.float())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
