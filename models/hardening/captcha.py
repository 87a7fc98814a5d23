"""captcha-whisperer's CRNN (DenseNet trunk, two LSTMs, CTC; a TorchScript export shipped in its wheel).

Inputs are captchas rendered by the ``captcha`` package (warped, rotated letters on a noisy
background, the kind the model was trained to read) and preprocessed by captcha-whisperer's own
``preprocess_bytes`` from PNG bytes, as its users do. Fidelity: the share of captchas whose greedy
CTC decoding (captcha-whisperer's ``decode``) is the reference's, letter for letter.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np

from onnxcompress.models.hardening import fidelity
from onnxcompress.models.hardening.entry import Entry, Feeds, split_seed

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LENGTH = 4


def shipped_model(_: Path) -> Path:
    """The ONNX file inside the installed captcha-whisperer package."""
    from captcha_whisperer.recognizer import default_model_path

    return default_model_path()


def texts(split: str, count: int) -> list[str]:
    """The captcha texts of a split: ``count`` random 4-character strings."""
    rng = random.Random(1000 + split_seed(split))
    return ["".join(rng.choice(ALPHABET) for _ in range(LENGTH)) for _ in range(count)]


def images(split: str, count: int) -> Feeds:
    """``image``: ``[count, 3, 60, 160]`` float32 BGR in 0..255, rendered and preprocessed as the package does."""
    from captcha.image import ImageCaptcha
    from captcha_whisperer.preprocess import preprocess_bytes

    random.seed(2000 + split_seed(split))  # the captcha package draws its warps from the global generator
    generator = ImageCaptcha(width=160, height=60)
    rendered = []
    for text in texts(split, count):
        buffer = io.BytesIO()
        generator.generate_image(text).save(buffer, format="PNG")
        rendered.append(preprocess_bytes(buffer.getvalue()))
    return {"image": np.concatenate(rendered)}


def decode(logits: np.ndarray) -> list[str]:
    """captcha-whisperer's greedy CTC decoding of ``[time, batch, classes]`` logits."""
    from captcha_whisperer.recognizer import decode as package_decode

    return package_decode(np.asarray(logits, np.float32))[0]


ENTRY = Entry(
    name="captcha-crnn",
    source="captcha-whisperer (shipped CRNN + BiLSTM + CTC, TorchScript export, opset 17)",
    requires=("captcha-whisperer", "captcha"),
    make=shipped_model,
    inputs=images,
    fidelity=fidelity.decoded_strings("logits", decode),
    shipped=True,
)
