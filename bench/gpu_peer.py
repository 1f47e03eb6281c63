"""The Python peer of bench_gpu: the official CPRFL model the way the authors' PyTorch code runs
it — eager PyTorch, the frozen CLIP RN50 text tower run on every forward over all 77 positions,
ResNet-101 at 448 px, one VSI layer of 8x512 heads, d 2048, 80 classes — timed on the same GPU
by scripts/gpu_check.sh. Written for this benchmark from the method's description
(docs/METHOD.md §1-§6), with random weights: it measures the cost of that way of running the
model, not its accuracy. Needs only torch (no torchvision, no CLIP package). Not part of cprfl.

  python3 bench/gpu_peer.py [--device cuda] [--reps 20] [--train-steps 10] [--out FILE]
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn
import torch.nn.functional as F


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet101Trunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for width, count, stride in ((64, 3, 1), (128, 4, 2), (256, 23, 2), (512, 3, 2)):
            for i in range(count):
                blocks.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * 4
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(self.stem(x))


class ClipTextTower(nn.Module):
    """CLIP RN50's text transformer: width 512, 12 layers, 8 heads, 77 tokens, projection to 1024."""

    def __init__(self, vocab=49408, width=512, layers=12, heads=8, context=77, embed=1024):
        super().__init__()
        self.token = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.randn(context, width) * 0.01)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(width)
        self.projection = nn.Parameter(torch.randn(width, embed) * width ** -0.5)
        self.register_buffer("mask", torch.full((context, context), float("-inf")).triu(1))

    def forward(self, tokens):
        x = self.token(tokens) + self.position
        x = self.final_norm(self.layers(x, mask=self.mask))
        return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ self.projection  # end-of-text position


class CprflHead(nn.Module):
    """PI, one VSI layer (pre-norm, no residuals, as the authors' code) and s_i = p'_i . p_i."""

    def __init__(self, d0=2048, d=2048, m=1024, heads=8, head_dim=512, ffn=2048):
        super().__init__()
        self.visual = nn.Linear(d0, d)
        self.pi = nn.Sequential(nn.Linear(m, d // 2), nn.GELU(), nn.Linear(d // 2, d))
        self.heads, self.head_dim = heads, head_dim
        self.norm1, self.qkv = nn.LayerNorm(d), nn.Linear(d, 3 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, d)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(), nn.Dropout(0.1), nn.Linear(ffn, d))
        self.drop = nn.Dropout(0.1)

    def forward(self, feature_map, w):
        tokens = self.visual(feature_map.flatten(2).transpose(1, 2))
        prompts = self.pi(w)
        z = torch.cat([tokens, prompts.unsqueeze(0).expand(tokens.shape[0], -1, -1)], 1)
        b, n, _ = z.shape
        q, k, v = self.qkv(self.norm1(z)).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-2, -1) / self.head_dim ** 0.5, -1) @ v
        z = self.drop(self.out(attention.transpose(1, 2).reshape(b, n, -1)))
        z = self.ffn(self.norm2(z))
        refined = z[:, tokens.shape[1]:]
        return (refined * prompts).sum(-1)


class AuthorsWayModel(nn.Module):
    def __init__(self, classes=80):
        super().__init__()
        self.trunk, self.text, self.head = ResNet101Trunk(), ClipTextTower(), CprflHead()
        for p in self.text.parameters():
            p.requires_grad_(False)
        tokens = torch.zeros(classes, 77, dtype=torch.long)
        tokens[:, 0], tokens[:, 1:6], tokens[:, 6] = 49406, torch.randint(1, 49000, (classes, 5)), 49407
        self.register_buffer("tokens", tokens)

    def forward(self, images):
        return self.head(self.trunk(images), self.text(self.tokens))  # text tower on every forward


def asl(logits, targets, gamma_neg=4.0, clip=0.05, eps=1e-8):
    p = torch.sigmoid(logits)
    p_m = (1 - p + clip).clamp(max=1)
    loss = targets * torch.log(p.clamp(min=eps)) + (1 - targets) * torch.log(p_m.clamp(min=eps))
    with torch.no_grad():
        weight = torch.pow(1 - p * targets - p_m * (1 - targets), gamma_neg * (1 - targets))
    return -(loss * weight).mean()


def timed(device, call, warmup, runs):
    for _ in range(warmup):
        call()
    torch.cuda.synchronize(device) if device.type == "cuda" else None
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    times.sort()
    return {"median_s": statistics.median(times), "p90_s": times[min(len(times) - 1, int(0.9 * len(times)))],
            "min_s": times[0], "runs": len(times)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # as bench_gpu: float32 is float32
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = AuthorsWayModel().to(device)
    size = args.image_size
    results = {"peer": "eager PyTorch, text tower on every forward (bench/gpu_peer.py)", "torch": torch.__version__,
               "device": str(device), "infer": {}, "train": {}}
    one = torch.randn(1, 3, size, size, device=device)
    for precision in ("fp32", "bf16"):
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        model.eval()

        def infer():
            with torch.no_grad(), autocast():
                model(one)

        results["infer"][precision] = {"batch1": timed(device, infer, 5, args.reps)}
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=1e-4)
        images = torch.randn(16, 3, size, size).pin_memory() if device.type == "cuda" else torch.randn(16, 3, size, size)
        targets = (torch.rand(16, 80) < 0.05).float()

        def step():
            x, y = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                logits = model(x).float()
            asl(logits, y).backward()
            optimizer.step()

        train = timed(device, step, 3, args.train_steps)
        train["images_per_s"] = 16 / train["median_s"]
        results["train"][precision] = train
    text = lambda: model.text(model.tokens)
    with torch.no_grad():
        results["text_tower_per_forward"] = timed(device, text, 3, args.reps)
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            json.dump(results, f, indent=2)
        import os
        os.replace(args.out + ".tmp", args.out)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
