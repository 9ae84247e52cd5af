# The ONNX layout of InsightFace's released recognizers, made here: a PyTorch IResNet or
# MobileFaceNet with arcforge's (= arcface_torch's) module names and random, calibrated batch norms,
# exported by torch.onnx.export in eval mode, which folds each Conv+BN into one Conv with
# "onnx::Conv_*" initializers and writes Linear as Gemm (or MatMul without a bias).
# test_export.cpp imports the file and compares with the PyTorch outputs saved next to it.
# vit_t is arcface_torch's Vision Transformer (backbones/vit.py, eval mode: no masking), whose
# LayerNorms torch.onnx writes as ReduceMean/Sub/Pow/... below opset 17 (test_vit_export.cpp).
#
#   /usr/bin/python3 torch_layout_export.py ARCH EMBEDDING OUT.onnx INPUT.npy OUTPUT.npy [OPSET]
import sys

import numpy as np
import torch
import torch.nn as nn

def bn(c): return nn.BatchNorm2d(c, eps=1e-5)

class IBasicBlock(nn.Module):
    def __init__(s, inp, planes, stride):
        super().__init__()
        s.bn1 = bn(inp); s.conv1 = nn.Conv2d(inp, planes, 3, 1, 1, bias=False); s.bn2 = bn(planes)
        s.prelu = nn.PReLU(planes); s.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False); s.bn3 = bn(planes)
        s.downsample = None
        if stride != 1 or inp != planes:
            s.downsample = nn.Sequential(nn.Conv2d(inp, planes, 1, stride, bias=False), bn(planes))
    def forward(s, x):
        out = s.bn3(s.conv2(s.prelu(s.bn2(s.conv1(s.bn1(x))))))
        return out + (s.downsample(x) if s.downsample is not None else x)

class IResNet(nn.Module):
    def __init__(s, blocks, emb):
        super().__init__()
        s.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False); s.bn1 = bn(64); s.prelu = nn.PReLU(64)
        inp = 64
        for i, (w, n) in enumerate(zip([64, 128, 256, 512], blocks)):
            setattr(s, "layer%d" % (i + 1), nn.Sequential(IBasicBlock(inp, w, 2), *[IBasicBlock(w, w, 1) for _ in range(n - 1)]))
            inp = w
        s.bn2 = bn(512); s.dropout = nn.Dropout(0.0); s.fc = nn.Linear(512 * 49, emb); s.features = nn.BatchNorm1d(emb, eps=1e-5)
    def forward(s, x):
        x = s.prelu(s.bn1(s.conv1(x)))
        x = s.layer4(s.layer3(s.layer2(s.layer1(x))))
        x = torch.flatten(s.bn2(x), 1)
        return s.features(s.fc(s.dropout(x)))

class ConvBlock(nn.Module):
    def __init__(s, i, o, k=1, st=1, p=0, g=1, act=True):
        super().__init__()
        mods = [nn.Conv2d(i, o, k, st, p, groups=g, bias=False), nn.BatchNorm2d(o)]
        if act: mods.append(nn.PReLU(o))
        s.layers = nn.Sequential(*mods)
    def forward(s, x): return s.layers(x)

class DepthWise(nn.Module):
    def __init__(s, i, o, residual, stride, hidden):
        super().__init__()
        s.residual = residual
        s.layers = nn.Sequential(ConvBlock(i, hidden), ConvBlock(hidden, hidden, 3, stride, 1, hidden), ConvBlock(hidden, o, act=False))
    def forward(s, x):
        y = s.layers(x)
        return x + y if s.residual else y

class Residual(nn.Module):
    def __init__(s, c, n, hidden):
        super().__init__()
        s.layers = nn.Sequential(*[DepthWise(c, c, True, 1, hidden) for _ in range(n)])
    def forward(s, x): return s.layers(x)

class GDC(nn.Module):
    def __init__(s, emb):
        super().__init__()
        s.layers = nn.Sequential(ConvBlock(512, 512, 7, 1, 0, 512, act=False), nn.Flatten(), nn.Linear(512, emb, bias=False), nn.BatchNorm1d(emb))
    def forward(s, x): return s.layers(x)

class MobileFaceNet(nn.Module):
    def __init__(s, emb, blocks=(1, 4, 6, 2), scale=2):
        super().__init__()
        n, w = 64 * scale, 128 * scale
        s.layers = nn.Sequential(
            ConvBlock(3, n, 3, 2, 1),
            ConvBlock(n, n, 3, 1, 1, 64) if blocks[0] == 1 else Residual(n, blocks[0], 128),
            DepthWise(n, n, False, 2, 128), Residual(n, blocks[1], 128),
            DepthWise(n, w, False, 2, 256), Residual(w, blocks[2], 256),
            DepthWise(w, w, False, 2, 512), Residual(w, blocks[3], 256))
        s.conv_sep = ConvBlock(w, 512)
        s.features = GDC(emb)
    def forward(s, x): return s.features(s.conv_sep(s.layers(x)))

class Attention(nn.Module):
    def __init__(s, dim, heads):
        super().__init__()
        s.heads, s.scale = heads, (dim // heads) ** -0.5
        s.qkv = nn.Linear(dim, dim * 3, bias=False); s.proj = nn.Linear(dim, dim)
    def forward(s, x):
        n, t, d = x.shape
        qkv = s.qkv(x).reshape(n, t, 3, s.heads, d // s.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0].float(), qkv[1].float(), qkv[2].float()
        attn = ((q @ k.transpose(-2, -1)) * s.scale).softmax(dim=-1)
        return s.proj((attn @ v).transpose(1, 2).reshape(n, t, d))

class Mlp(nn.Module):
    def __init__(s, dim):
        super().__init__()
        s.fc1 = nn.Linear(dim, 4 * dim); s.act = nn.ReLU6(); s.fc2 = nn.Linear(4 * dim, dim)
    def forward(s, x): return s.fc2(s.act(s.fc1(x)))

class Block(nn.Module):
    def __init__(s, dim, heads):
        super().__init__()
        s.norm1 = nn.LayerNorm(dim); s.attn = Attention(dim, heads); s.norm2 = nn.LayerNorm(dim); s.mlp = Mlp(dim)
    def forward(s, x):
        x = x + s.attn(s.norm1(x))
        return x + s.mlp(s.norm2(x))

class PatchEmbed(nn.Module):
    def __init__(s, dim):
        super().__init__()
        s.proj = nn.Conv2d(3, dim, 9, 9)
    def forward(s, x): return s.proj(x).flatten(2).transpose(1, 2)

class VisionTransformer(nn.Module):
    def __init__(s, emb, dim=256, depth=12, heads=8):
        super().__init__()
        s.tokens, s.dim = 144, dim
        s.patch_embed = PatchEmbed(dim)
        s.pos_embed = nn.Parameter(torch.randn(1, 144, dim) * 0.02)
        s.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        s.norm = nn.LayerNorm(dim)
        s.feature = nn.Sequential(nn.Linear(144 * dim, dim, bias=False), nn.BatchNorm1d(dim, eps=2e-5),
                                  nn.Linear(dim, emb, bias=False), nn.BatchNorm1d(emb, eps=2e-5))
        for m in s.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None: nn.init.uniform_(m.bias, -0.1, 0.1)
            elif isinstance(m, nn.LayerNorm):
                nn.init.uniform_(m.weight, 0.5, 1.5); nn.init.uniform_(m.bias, -0.3, 0.3)
    def forward(s, x):
        b = x.shape[0]
        x = s.patch_embed(x) + s.pos_embed
        for block in s.blocks: x = block(x)
        return s.feature(torch.reshape(s.norm(x.float()), (b, s.tokens * s.dim)))

def randomise(m):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
                mod.bias.copy_(torch.rand(mod.bias.shape, generator=g) * 0.6 - 0.3)
                mod.momentum = 1.0
            elif isinstance(mod, nn.PReLU):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) * 0.4)
        m.train(); m(torch.rand(4, 3, 112, 112, generator=g) * 2 - 1)
    m.eval()

arch, emb, out, x_path, y_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
opset = int(sys.argv[6]) if len(sys.argv) > 6 else 11
torch.manual_seed(0)
builders = {"r18": lambda: IResNet([2, 2, 2, 2], emb), "r50": lambda: IResNet([3, 4, 14, 3], emb),
            "mbf": lambda: MobileFaceNet(emb), "vit_t": lambda: VisionTransformer(emb)}
model = builders[arch]()
randomise(model)
x = torch.rand(2, 3, 112, 112) * 2 - 1
with torch.no_grad():
    y = model(x)
torch.onnx.export(model, x, out, opset_version=opset, input_names=["input.1"], output_names=["embedding"],
                  dynamic_axes={"input.1": {0: "batch"}, "embedding": {0: "batch"}}, do_constant_folding=True)
np.save(x_path, x.numpy().astype(np.float32))
np.save(y_path, y.numpy().astype(np.float32))
