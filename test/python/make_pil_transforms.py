#!/usr/bin/env python3
"""Reference for the transform cross-check: photo-like images of several sizes and kinds (RGB JPEG,
grayscale JPEG, CMYK JPEG, PNG named .JPEG, RGBA PNG, palette PNG, an image smaller than the resize)
and torchvision's PIL presets on them:
  eval:  Resize(256) + CenterCrop(224) + ToTensor + Normalize
  train: resized_crop(box from RandomResizedCrop.get_params, 224) + optional hflip + ToTensor + Normalize
Writes the images to OUT_DIR/images/ and the tensors to OUT_DIR/pil_transforms.safetensors."""
import os
import sys

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from import_torchvision import write_safetensors  # noqa: E402

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def photo(w, h, seed):
    """Smooth colour fields + gradients + noise + text, like the C++ photo_like_image."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((max(2, h // 24), max(2, w // 24), 3)) * 255).astype(np.uint8))
    a = np.asarray(coarse.resize((w, h), Image.BICUBIC)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    a[..., 0] += 50 * xx / w
    a[..., 2] += 50 * yy / h
    a += rng.normal(0, 10, a.shape)
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for i in range(6):
        d.text((int(rng.integers(0, max(1, w - 40))), int(rng.integers(0, max(1, h - 12)))), f"prom {i}",
               fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return img


def main(out_dir):
    torch.manual_seed(0)
    img_dir = os.path.join(out_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    cases = []  # (file name, PIL image, save kwargs)
    cases.append(("landscape.jpg", photo(500, 375, 1), dict(format="JPEG", quality=90)))
    cases.append(("portrait.jpg", photo(333, 500, 2), dict(format="JPEG", quality=90)))
    cases.append(("wide.jpg", photo(640, 240, 3), dict(format="JPEG", quality=85)))
    cases.append(("small_upscaled.jpg", photo(180, 120, 4), dict(format="JPEG", quality=90)))
    cases.append(("gray.jpg", photo(400, 300, 5).convert("L"), dict(format="JPEG", quality=90)))
    cases.append(("cmyk.jpg", photo(300, 300, 6).convert("CMYK"), dict(format="JPEG", quality=95)))
    cases.append(("png_named.JPEG", photo(320, 240, 7), dict(format="PNG")))
    rgba = photo(260, 300, 8).convert("RGBA")
    rgba.putalpha(Image.fromarray((np.random.default_rng(9).random((300, 260)) * 255).astype(np.uint8)))
    cases.append(("alpha.png", rgba, dict(format="PNG")))
    cases.append(("palette.png", photo(300, 200, 10).convert("P", palette=Image.ADAPTIVE), dict(format="PNG")))
    eval_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    finish = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    tensors = {}
    for k, (name, img, kw) in enumerate(cases):
        path = os.path.join(img_dir, name)
        img.save(path, **kw)
        loaded = Image.open(path).convert("RGB")  # torchvision's default_loader
        tensors[f"{name}.eval"] = eval_tf(loaded).numpy()
        i, j, h, w = T.RandomResizedCrop.get_params(loaded, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
        flip = k % 2
        crop = F.resized_crop(loaded, i, j, h, w, [224, 224])
        if flip:
            crop = F.hflip(crop)
        tensors[f"{name}.train"] = finish(crop).numpy()
        tensors[f"{name}.box"] = np.array([i, j, h, w, flip], dtype=np.int64)
    write_safetensors(os.path.join(out_dir, "pil_transforms.safetensors"), tensors,
                      {"files": ",".join(name for name, _, _ in cases)})
    import torchvision
    import PIL
    print(f"torchvision {torchvision.__version__}, PIL {PIL.__version__}: wrote {len(cases)} images to {img_dir}")


if __name__ == "__main__":
    main(sys.argv[1])
