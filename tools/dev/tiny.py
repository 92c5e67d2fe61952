"""A tiny randomly initialised SD2.1-shaped pipeline, built in-process (no downloads).

Same interfaces and tensor shapes as stable-diffusion-2-1-base (64x64x4 latents,
77x1024 text context, 8x VAE upsampling to 512x512) but few channels and layers,
so compile/stage/serve run for real on a CPU in well under a second per image.
"""
from __future__ import annotations

import json
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-to-printable-character table used by byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def _byte_level_vocab() -> dict[str, int]:
    """CLIP's byte-level vocabulary without merges: every byte, alone and word-final."""
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}


def build_tiny_tokenizer(directory: Path):
    """Write vocab.json/merges.txt for a real CLIPTokenizer and load it back."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(_byte_level_vocab()))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    # pad with "!" as stable-diffusion-2-1-base does
    return CLIPTokenizer.from_pretrained(directory, model_max_length=77, pad_token="!")


def build_tiny_pipeline(seed: int = 0):
    """Return a StableDiffusionPipeline with tiny random weights."""
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = build_tiny_tokenizer(Path(scratch))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=1024,  # SD2.1 context width
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=8,
            max_position_embeddings=77,
            projection_dim=64,
            hidden_act="gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    # Cross-attention only at the 32x32 level keeps self-attention cheap on CPU.
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=1024,
        attention_head_dim=1,  # diffusers reads this as the head count
        use_linear_projection=True,
        norm_num_groups=16,
    )
    # Four blocks = three 2x upsamplings: 64x64 latent -> 512x512 image.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=512,
        mid_block_add_attention=False,  # 4096-token attention would dominate CPU time
    )
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_tiny_weights(directory: Path, seed: int = 0) -> Path:
    """Save the tiny pipeline in the hub layout, as mirrored weights would be."""
    build_tiny_pipeline(seed).save_pretrained(directory)
    return directory
