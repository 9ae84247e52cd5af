#!/usr/bin/env python3
"""InsightFace's arcface_torch training recipe in PyTorch Python, for side-by-side throughput.

Same backbones (IResNet / MobileFaceNet / vit_t as arcface_torch defines them), same normalised-linear
ArcFace head (s=64, m=0.5), SGD (momentum 0.9, wd 5e-4), gradient clipping 5 on the backbone,
autocast for bf16/fp16 with a GradScaler for fp16, one random batch reused (no data loading).
Prints one JSON line: images_per_s, peak memory, final loss.
Debian: /usr/bin/python3 with python3-torch (CPU); GPU machine: python3 with PyTorch 2.x.
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + identity


class IResNet(nn.Module):
    def __init__(self, layers, num_features=512):
        super().__init__()
        self.inplanes = 64
        self.conv1 = conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make(64, layers[0])
        self.layer2 = self._make(128, layers[1])
        self.layer3 = self._make(256, layers[2])
        self.layer4 = self._make(512, layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def _make(self, planes, blocks):
        down = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, 2, bias=False),
                             nn.BatchNorm2d(planes, eps=1e-5))
        layers = [IBasicBlock(self.inplanes, planes, 2, down)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.dropout(self.bn2(x)), 1)
        return self.features(self.fc(x))


class ConvBlock(nn.Sequential):
    def __init__(self, i, o, k=1, s=1, p=0, g=1, act=True):
        mods = [nn.Conv2d(i, o, k, s, p, groups=g, bias=False), nn.BatchNorm2d(o)]
        if act:
            mods.append(nn.PReLU(o))
        super().__init__(*mods)


class DepthWise(nn.Module):
    def __init__(self, i, o, residual, k=3, s=2, p=1, groups=1):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(ConvBlock(i, groups), ConvBlock(groups, groups, k, s, p, g=groups),
                                    ConvBlock(groups, o, act=False))

    def forward(self, x):
        y = self.layers(x)
        return x + y if self.residual else y


def residual(c, num_block, groups, k=3, s=1, p=1):
    return nn.Sequential(*[DepthWise(c, c, True, k, s, p, groups) for _ in range(num_block)])


class MobileFaceNet(nn.Module):
    def __init__(self, num_features=512, blocks=(1, 4, 6, 2), scale=2):
        super().__init__()
        self.layers = nn.Sequential(
            ConvBlock(3, 64 * scale, 3, 2, 1),
            ConvBlock(64 * scale, 64 * scale, 3, 1, 1, g=64) if blocks[0] == 1 else residual(64 * scale, blocks[0], 128),
            DepthWise(64 * scale, 64 * scale, False, 3, 2, 1, 128),
            residual(64 * scale, blocks[1], 128),
            DepthWise(64 * scale, 128 * scale, False, 3, 2, 1, 256),
            residual(128 * scale, blocks[2], 256),
            DepthWise(128 * scale, 128 * scale, False, 3, 2, 1, 512),
            residual(128 * scale, blocks[3], 256),
        )
        self.conv_sep = ConvBlock(128 * scale, 512, 1)
        self.gdc = nn.Sequential(ConvBlock(512, 512, 7, 1, 0, g=512, act=False), nn.Flatten(),
                                 nn.Linear(512, num_features, bias=False), nn.BatchNorm1d(num_features))

    def forward(self, x):
        return self.gdc(self.conv_sep(self.layers(x)))


class ReLU6(nn.Module):
    """nn.ReLU6 as a clamp: the same function, and torch 1.13 has no bf16 CPU backward for ReLU6."""

    def forward(self, x):
        return x.clamp(0, 6)


class VitAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        with torch.autocast(x.device.type, enabled=False):  # arcface_torch: attention in fp32
            q, k, v = qkv[0].float(), qkv[1].float(), qkv[2].float()
            attn = ((q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5).softmax(dim=-1)
            x = (attn @ v).transpose(1, 2).reshape(n, t, d)
        return self.proj(x)


class VitBlock(nn.Module):
    def __init__(self, dim, heads, drop_path):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = VitAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), ReLU6(), nn.Linear(4 * dim, dim))
        self.drop_path = drop_path

    def dropped(self, branch):  # timm's DropPath
        if not self.training or self.drop_path == 0:
            return branch
        keep = torch.empty(branch.shape[0], 1, 1, device=branch.device, dtype=branch.dtype).bernoulli_(1 - self.drop_path)
        return branch * keep / (1 - self.drop_path)

    def forward(self, x):
        x = x + self.dropped(self.attn(self.norm1(x)))
        return x + self.dropped(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """arcface_torch's vit_t (backbones/vit.py): 9x9 patches, 144 tokens, masking 0.1 in training."""

    def __init__(self, num_features=512, dim=256, depth=12, heads=8, drop_path=0.1, mask_ratio=0.1):
        super().__init__()
        self.tokens, self.dim, self.mask_ratio = 144, dim, mask_ratio
        self.patch_embed = nn.Conv2d(3, dim, 9, 9)
        self.pos_embed = nn.Parameter(torch.zeros(1, 144, dim).normal_(0, 0.02))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList([VitBlock(dim, heads, drop_path * i / (depth - 1)) for i in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.feature = nn.Sequential(nn.Linear(144 * dim, dim, bias=False), nn.BatchNorm1d(dim, eps=2e-5),
                                     nn.Linear(dim, num_features, bias=False), nn.BatchNorm1d(num_features, eps=2e-5))
        for m in self.modules():  # arcface_torch's _init_weights: trunc_normal_(std=.02), zero bias
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        n = x.shape[0]
        masking = self.training and self.mask_ratio > 0
        if masking:  # arcface_torch's random_masking
            keep = int(self.tokens * (1 - self.mask_ratio))
            shuffle = torch.rand(n, self.tokens, device=x.device).argsort(dim=1)
            restore = shuffle.argsort(dim=1)
            x = x.gather(1, shuffle[:, :keep, None].expand(-1, -1, self.dim))
        for block in self.blocks:
            x = block(x)
        x = self.norm(x.float())
        if masking:
            x = torch.cat([x, self.mask_token.to(x.dtype).expand(n, self.tokens - x.shape[1], -1)], dim=1)
            x = x.gather(1, restore[:, :, None].expand(-1, -1, self.dim))
        return self.feature(x.reshape(n, self.tokens * self.dim))


def make(arch, emb):
    depths = {"r18": [2, 2, 2, 2], "r34": [3, 4, 6, 3], "r50": [3, 4, 14, 3], "r100": [3, 13, 30, 3]}
    if arch in depths:
        return IResNet(depths[arch], emb)
    if arch == "mbf":
        return MobileFaceNet(emb)
    if arch == "vit_t":
        return VisionTransformer(emb)
    raise SystemExit("unknown arch " + arch)


class ArcFaceHead(nn.Module):
    def __init__(self, emb, classes, s=64.0, m=0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.normal(0, 0.01, (classes, emb)))
        self.s, self.m = s, m

    def forward(self, e, labels):
        cos = F.linear(F.normalize(e.float()), F.normalize(self.weight)).clamp(-1, 1)
        target = cos.gather(1, labels[:, None])
        theta = torch.acos(target.clamp(-1 + 1e-7, 1 - 1e-7))
        cos = cos.scatter(1, labels[:, None], torch.cos(theta + self.m))
        return F.cross_entropy(cos * self.s, labels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="mbf")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--embedding", type=int, default=512)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = make(a.arch, a.embedding).to(dev).train()
    head = ArcFaceHead(a.embedding, a.classes).to(dev)
    opt = torch.optim.SGD([{"params": model.parameters()}, {"params": head.parameters()}],
                          lr=0.1, momentum=0.9, weight_decay=5e-4)
    fp16 = a.precision == "fp16"
    scaler = torch.cuda.amp.GradScaler(enabled=fp16) if dev.type == "cuda" else None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.precision)
    x = torch.randn(a.batch, 3, 112, 112, device=dev)
    y = torch.randint(0, a.classes, (a.batch,), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            e = model(x)
        loss = head(e, y)
        if scaler is not None and fp16:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), 5)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5)
            opt.step()
        return loss.item()  # one sync per step, as arcface_torch (its loss AverageMeter reads loss.item())

    for _ in range(a.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    loss = float("nan")
    for _ in range(a.steps):
        loss = step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "arch": a.arch, "precision": a.precision,
                      "device": a.device, "batch_size": a.batch, "classes": a.classes,
                      "threads": torch.get_num_threads(), "steps": a.steps,
                      "images_per_s": a.steps * a.batch / dt, "final_loss": loss,
                      "peak_device_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else 0,
                      # the process's peak resident memory, as arcforge reports it (Linux: KiB)
                      "peak_host_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}),
          flush=True)


if __name__ == "__main__":
    main()
