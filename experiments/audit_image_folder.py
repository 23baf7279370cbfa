"""Audit a folder of images you already have, end to end: import -> embed -> measure -> report.

    python experiments/audit_image_folder.py --images DIR --manifest FILE --out OUT

The manifest (CSV/Parquet) names each image's ``path`` (relative to DIR), ``role``
(``generated`` or ``reference``) and group columns (``race``, ``gender``, ``age``).
``--demo N`` builds such a folder from real faces that ship with scikit-image (LFW subset,
upscaled to 128 px): the first half as reference, the second as "generated", with
placeholder labels ``race = half-A / half-B`` that exercise the pipeline and mean nothing.
Encoders: open_clip ViT-B-32 with its pretrained weights (``--clip ViT-B-32:TAG_OR_PATH``;
``--clip ViT-B-32:random`` runs offline with untrained weights, and the report says so)
and dlib.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def demo_folder(folder: Path, size: int) -> tuple[Path, Path]:
    from PIL import Image
    from skimage import data

    faces = data.lfw_subset()[:size]
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, face in enumerate(faces):
        name = f"lfw-{i:03d}.png"
        Image.fromarray((255 * face).astype(np.uint8)).convert("RGB").resize((128, 128), Image.Resampling.LANCZOS).save(folder / name)
        half = i * 2 // len(faces)
        rows.append(dict(path=name, role="reference" if i % 2 == 0 else "generated", race=f"half-{'AB'[half]}",
                         gender="unlabelled"))
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return folder, manifest


def main(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    images, manifest = (Path(args.images), Path(args.manifest)) if args.images else demo_folder(out / "demo-images", args.demo)
    command = [sys.executable, "-m", "faceaudit", "audit", "--images", str(images), "--manifest", str(manifest),
               "--out", str(out / "audit"), "--clip", args.clip, "--draws", str(args.draws)]
    result = subprocess.run(command, text=True)
    if result.returncode:
        raise SystemExit(result.returncode)
    metrics = pd.read_parquet(out / "audit" / "metrics.parquet")
    summary = {m: metrics[metrics.metric == m][["group", "value", "low", "high"]].to_dict(orient="records")
               for m in ("mmd2", "fd_audit", "face_not_found", "vendi")}
    (out / "audit_image_folder.json").write_text(json.dumps(summary, indent=2))
    return summary


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images")
    p.add_argument("--manifest")
    p.add_argument("--demo", type=int, default=120, help="faces in the demo folder (without --images)")
    p.add_argument("--out", default="experiments/out/folder")
    p.add_argument("--clip", default="ViT-B-32", help="open_clip ARCHITECTURE[:PRETRAINED]")
    p.add_argument("--draws", type=int, default=150)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse())
