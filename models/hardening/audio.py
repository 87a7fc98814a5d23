"""Speech-like sound for the audio models: voiced syllables synthesised from a seed, as Whisper's log-mel features.

No recording ships on the machine, so each sample is built the way a vowel is produced: a glottal
pulse train (pitch 90-260 Hz, with jitter) shaped by three formant resonances that move from
syllable to syllable, syllables of 120-350 ms with pauses, and a little breath noise. The features
come from ``transformers``' ``WhisperFeatureExtractor`` (its numpy path), exactly what the model's
users feed it.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
SECONDS = 2
MEL_BINS = 80
FRAMES = SECONDS * 100  # Whisper's 10 ms hop
# (F1, F2, F3) in Hz of a few vowels: /a/, /i/, /u/, /e/, /o/.
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


def log_mel(count: int, seed: int) -> np.ndarray:
    """``count`` clips as float32 log-mel features ``[count, 80, 200]``."""
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=MEL_BINS, sampling_rate=SAMPLE_RATE, chunk_length=SECONDS)
    rng = np.random.default_rng(seed)
    clips = [speech_like(rng) for _ in range(count)]
    features = extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"]
    return np.asarray(features, np.float32)


def speech_like(rng: np.random.Generator) -> np.ndarray:
    """One clip of ``SECONDS`` seconds at 16 kHz, peak about 0.5."""
    clip = np.zeros(SAMPLE_RATE * SECONDS, np.float64)
    start = int(rng.uniform(0.0, 0.2) * SAMPLE_RATE)
    pitch = rng.uniform(90, 260)
    while start < clip.size:
        length = int(rng.uniform(0.12, 0.35) * SAMPLE_RATE)
        syllable = _syllable(rng, min(length, clip.size - start), pitch * rng.uniform(0.85, 1.15))
        clip[start : start + syllable.size] += syllable
        start += syllable.size + int(rng.uniform(0.03, 0.25) * SAMPLE_RATE)
    clip += 0.003 * rng.standard_normal(clip.size)
    return (0.5 * clip / max(np.abs(clip).max(), 1e-9)).astype(np.float32)


def _syllable(rng: np.random.Generator, length: int, pitch: float) -> np.ndarray:
    """A voiced segment: harmonics of a jittered pitch weighted by formant resonances, under a smooth envelope."""
    t = np.arange(length) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(pitch * (1 + 0.02 * rng.standard_normal(length).cumsum() / np.sqrt(length))) / SAMPLE_RATE
    formants = np.asarray(VOWELS[rng.integers(len(VOWELS))], np.float64) * rng.uniform(0.9, 1.1)
    signal = np.zeros(length)
    for harmonic in range(1, int(4000 / pitch)):
        frequency = harmonic * pitch
        gain = sum(1.0 / (1.0 + ((frequency - f) / (60 + 0.05 * f)) ** 2) for f in formants) / harmonic**0.5
        signal += gain * np.sin(harmonic * phase)
    return signal * np.sin(np.pi * t / t[-1]) ** 2 if length > 1 else signal
