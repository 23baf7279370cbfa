"""Images per second: faceaudit's generation against a plain batched diffusers loop.

On the same pipeline, prompts and seeds, in one process: for each batch size, (a) a plain
loop that calls the pipeline with a list of prompts and one seeded ``torch.Generator`` per
image and keeps the PIL images, and (b) faceaudit's renderer on the same batches, which
also encodes each PNG, hashes it and writes it and the batch's Parquet part atomically.
Batch 1 of (b) is the one-at-a-time path faceaudit had before batching. Reported: median
images/s of ``--repeats`` runs after a warm-up, the spread, faceaudit / plain, and the gain of
batching over faceaudit at batch 1.

    python benchmarks/generate.py --model tiny --out benchmarks/results/generate.json        # CPU, minutes
    python benchmarks/generate.py --model sd21 --device cuda --dtype float16 --steps 30 \\
        --resolution 512 --batch-sizes 1,2,4,8,16 --out benchmarks/results/generate-gpu.json

``--model sd21`` builds Stable Diffusion 2.1's UNet, VAE and text encoder from their configs
with random weights (no download; throughput equals the real model's); ``tiny`` is the test
suite's 32-pixel pipeline; a path loads a saved pipeline.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test suite's model builders (tests/tiny_models.py)


def sd21_pipeline(folder: Path) -> Path:
    """Stable Diffusion 2.1's architecture (768-v UNet, OpenCLIP ViT-H text tower, SD VAE) with
    random weights, saved with save_pretrained."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tests.tiny_models import clip_tokenizer_files

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=96, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, sample_size=768)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                                        num_hidden_layers=23, max_position_embeddings=77, projection_dim=512,
                                        hidden_act="gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=0))
    vocab, merges = clip_tokenizer_files(folder / "_tokenizer_src")
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              steps_offset=1, set_alpha_to_one=False, prediction_type="v_prediction")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    path = folder / "sd21-random"
    pipe.save_pretrained(path)
    return path


def model_path(name: str, folder: Path) -> Path:
    if name == "tiny":
        from tests.tiny_models import tiny_stable_diffusion

        return tiny_stable_diffusion(folder)
    if name == "sd21":
        return sd21_pipeline(folder)
    return Path(name)


def jobs_for(args, model: Path, batch: int):
    """The first ``--images`` source jobs of a spec over 4 races x 2 genders, cut into batches."""
    from faceaudit.files.spec import load_spec
    from faceaudit.torch_layer.generate import batches, expand_jobs

    spec = Path(tempfile.mkdtemp()) / "bench.toml"
    spec.write_text(f"""
[audit]
identities_per_group = 4
seeds_per_identity = 2
group_images = 8
[groups]
race = ["Asian", "Black", "Indian", "White"]
gender = ["man", "woman"]
[[generators]]
name = "bench"
model = "{model}"
steps = {args.steps}
guidance = 7.5
resolution = {args.resolution}
dtype = "{args.dtype}"
device = "{args.device}"
edit_method = "none"
batch_size = {batch}
""")
    loaded = load_spec(spec)
    generator = loaded.generators[0]
    jobs = expand_jobs(loaded, generator)[:args.images]
    return generator, batches(jobs, generator)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(args) -> dict:
    import torch

    from faceaudit.files.io import atomic_write_text
    from faceaudit.torch_layer.generate import Renderer, load_pipeline

    work = Path(tempfile.mkdtemp(prefix="faceaudit-bench-"))
    model = model_path(args.model, work / "models")
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    generator, _ = jobs_for(args, model, sizes[0])
    pipe = load_pipeline(generator)
    rows = []
    for batch in sizes:
        generator, cut = jobs_for(args, model, batch)

        def plain():  # what a user writes: a list of prompts, a generator per image
            for jobs in cut:
                pipe(prompt=[j["prompt"] for j in jobs], num_inference_steps=generator.steps,
                     guidance_scale=generator.guidance, height=generator.resolution, width=generator.resolution,
                     generator=[torch.Generator("cpu").manual_seed(int(j["seed"])) for j in jobs]).images
            _sync(args.device)

        def faceaudit_run():  # the renderer, given the pipeline loaded above, writing a fresh folder
            renderer = Renderer(generator, Path(tempfile.mkdtemp(dir=work)), loader=lambda _: pipe)
            for jobs in cut:
                renderer(jobs)
            _sync(args.device)

        times = {"plain": [], "faceaudit": []}
        for name, fn in (("plain", plain), ("faceaudit", faceaudit_run)):
            fn()  # warm-up (kernel selection, allocator)
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        n = sum(len(j) for j in cut)
        row = {"batch_size": batch, "images": n}
        for name, ts in times.items():
            row[f"{name}_images_per_s"] = n / statistics.median(ts)
            row[f"{name}_spread_s"] = [min(ts), max(ts)]
        row["faceaudit_over_plain"] = row["faceaudit_images_per_s"] / row["plain_images_per_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = next(r for r in rows if r["batch_size"] == sizes[0])["faceaudit_images_per_s"]
    for row in rows:
        row["gain_over_first_batch_size"] = row["faceaudit_images_per_s"] / base
    result = {
        "model": args.model, "device": args.device, "dtype": args.dtype, "steps": args.steps,
        "resolution": args.resolution, "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine(),
        "versions": {p: md.version(p) for p in ("torch", "diffusers", "transformers")},
        "rows": rows,
    }
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    return result


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help="tiny | sd21 | a saved pipeline's folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--batch-sizes", default="1,2,4,8")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse())
