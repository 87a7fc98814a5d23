"""``transformers`` architectures built from small configs with seeded random weights, both exporters.

Nothing is downloaded: each model is ``ModelClass(config)``. Random weights make "the task" the
FP32 reference's own answers, which is what the corpus judges anyway (agreement with the
reference). Text: BERT, DistilBERT and DeBERTa-v2 sentence encoders (masked mean pooling, as sentence-transformers
ships them), a GPT-2 decoder, and Llama and Qwen2 decoders (grouped-query attention, rotary embeddings, gated MLP, as
today's small open LMs are built), all without a KV cache; vision: ViT, ConvNeXt and EfficientNet (what timm
would have given: timm imports torchvision, which cannot be installed beside this torch); audio: a
Whisper encoder on log-mel features of speech-like clips. CNNs with BatchNorm get statistics from
random inputs (``vision.with_batch_statistics``), else their untrained activations vanish and every
image gets the same logits.
"""

from __future__ import annotations

import os

import numpy as np

import torch
from torch import nn

from onnxcompress.models.hardening import audio, exported, fidelity, photos, text
from onnxcompress.models.hardening.entry import SPLITS, Entry, Feeds, split_seed
from onnxcompress.models.hardening.pooling import mean_pool

SEED = 0
IMAGE_SIZE = 224
CLASSES = 10
TINY = {"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 512}
TEXT_AXES = {"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}, "token_type_ids": {1: "sequence"}}


def seeded_model(build):
    """``build()`` under the corpus seed, offline, in eval mode."""
    from onnxcompress.models.seeding import seeded

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with seeded(SEED):
        return build().eval()


# The wrappers give each model an explicit positional signature: both exporters trace positional inputs.


class TextEncoder(nn.Module):
    """A transformers encoder -> ``(last_hidden_state, sentence_embedding)`` (masked mean)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        """Hidden states and mean-pooled sentence embeddings."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        return hidden, mean_pool(hidden, attention_mask)


class CausalLM(nn.Module):
    """A transformers decoder without a KV cache -> next-token ``logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        """Logits over the vocabulary at every position."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


class CausalLMWithCache(nn.Module):
    """A transformers decoder with its key-value cache as flat inputs and outputs, as Optimum exports one:
    ``(input_ids, attention_mask, position_ids, past key 0, past value 0, ...)`` -> ``(logits, present key 0, ...)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        """Logits at the new positions and every layer's keys and values over the past and new positions."""
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache()
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, past_key_values=cache, use_cache=True)
        return (out.logits, *(tensor for layer in out.past_key_values.layers for tensor in (layer.keys, layer.values)))


class AudioEncoder(nn.Module):
    """A Whisper encoder -> ``(last_hidden_state, utterance_embedding)`` (mean over frames)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_features):
        """Frame states and their mean."""
        hidden = self.model(input_features=input_features).last_hidden_state
        return hidden, hidden.mean(dim=1)


class ImageClassifier(nn.Module):
    """A transformers image classifier -> ``logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        """Class logits."""
        return self.model(pixel_values=pixel_values).logits


def bert():
    """BERT (2 layers, d=128) as a sentence encoder."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=text.VOCAB_SIZE, attn_implementation="eager", **TINY)
    return TextEncoder(seeded_model(lambda: BertModel(config, add_pooling_layer=False)))


def distilbert():
    """DistilBERT (2 layers, d=128) as a sentence encoder."""
    from transformers import DistilBertConfig, DistilBertModel

    config = DistilBertConfig(vocab_size=text.VOCAB_SIZE, dim=128, n_layers=2, n_heads=4, hidden_dim=512, attn_implementation="eager")
    return TextEncoder(seeded_model(lambda: DistilBertModel(config)))


def deberta():
    """DeBERTa-v2 (2 layers, d=128: disentangled attention over relative positions) as a sentence encoder."""
    from transformers import DebertaV2Config, DebertaV2Model

    config = DebertaV2Config(vocab_size=text.VOCAB_SIZE, attn_implementation="eager", **TINY)
    return TextEncoder(seeded_model(lambda: DebertaV2Model(config)))


def gpt2():
    """A GPT-2 decoder (2 layers, d=128) with its LM head, no KV cache."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=text.VOCAB_SIZE, n_embd=128, n_layer=2, n_head=4, n_positions=128, use_cache=False, attn_implementation="eager")
    return CausalLM(seeded_model(lambda: GPT2LMHeadModel(config)))


def llama():
    """A Llama decoder (2 layers, d=128, 8 query heads sharing 2 key/value heads) with its LM head, no KV cache."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=text.VOCAB_SIZE, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128, use_cache=False,
                         attn_implementation="eager")
    return CausalLM(seeded_model(lambda: LlamaForCausalLM(config)))


def qwen2():
    """A Qwen2 decoder (2 layers, d=128, 8 query heads sharing 2 key/value heads, biased q/k/v projections), no KV cache."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=text.VOCAB_SIZE, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128, use_cache=False,
                         attn_implementation="eager")
    return CausalLM(seeded_model(lambda: Qwen2ForCausalLM(config)))


def llama_with_cache():
    """The hf-llama decoder with its KV cache as flat inputs and outputs, as Optimum exports LMs."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=text.VOCAB_SIZE, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128, attn_implementation="eager")
    return CausalLMWithCache(seeded_model(lambda: LlamaForCausalLM(config)))


def whisper_encoder():
    """A Whisper encoder (2 layers, d=128) over 80 mel bins x 2 s."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(
        d_model=128, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=512,
        num_mel_bins=audio.MEL_BINS, max_source_positions=audio.FRAMES // 2, attn_implementation="eager",
    )
    return AudioEncoder(seeded_model(lambda: WhisperEncoder(config)))


def vit():
    """ViT (16-pixel patches at 224, 2 layers, d=128) with a 10-class head."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=IMAGE_SIZE, patch_size=16, num_labels=CLASSES, attn_implementation="eager", **TINY)
    return ImageClassifier(seeded_model(lambda: ViTForImageClassification(config)))


def convnext():
    """ConvNeXt (stages of 1, 1, 2, 1 blocks, 32-256 channels) with a 10-class head."""
    from transformers import ConvNextConfig, ConvNextForImageClassification

    config = ConvNextConfig(depths=[1, 1, 2, 1], hidden_sizes=[32, 64, 128, 256], num_labels=CLASSES)
    return ImageClassifier(seeded_model(lambda: ConvNextForImageClassification(config)))


def efficientnet():
    """EfficientNet (B0's layout at half width and depth: depthwise convs, squeeze-excite, SiLU) with a 10-class head."""
    from transformers import EfficientNetConfig, EfficientNetForImageClassification

    from onnxcompress.models.vision import with_batch_statistics

    config = EfficientNetConfig(width_coefficient=0.5, depth_coefficient=0.5, image_size=IMAGE_SIZE, hidden_dim=640, num_labels=CLASSES)
    model = _unit_batchnorm_scales(seeded_model(lambda: EfficientNetForImageClassification(config)))
    return ImageClassifier(with_batch_statistics(model, (3, IMAGE_SIZE, IMAGE_SIZE)))


def _unit_batchnorm_scales(model: nn.Module) -> nn.Module:
    """``model`` with BatchNorm scales 1 and shifts 0, as PyTorch initialises them: transformers draws them like
    weights (std 0.02), and three per block shrank EfficientNet's activations 1e5-fold a block (logits near 1e-33)."""
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.weight.fill_(1.0)
                layer.bias.zero_()
    return model


def sentence_feeds(split: str, count: int) -> Feeds:
    """Tokenised sentences with BERT's three inputs."""
    return text.sentences(split, count, token_types=True)


def first_step_feeds(split: str, count: int) -> Feeds:
    """Tokenised sentences as generation's first step feeds a cached decoder: positions 0..n-1, every cache empty."""
    feeds = text.sentences(split, count)
    ids = feeds["input_ids"]
    caches = {name: np.zeros((count, LLAMA_KV_HEADS, 0, LLAMA_HEAD_DIM), np.float32) for name in LLAMA_CACHE_INPUTS}
    return {**feeds, "position_ids": np.broadcast_to(np.arange(ids.shape[1]), ids.shape).copy(), **caches}


def later_step_feeds(split: str, count: int) -> Feeds:
    """First-step feeds with 3 cached positions before them: what a cached decoder is traced on."""
    feeds = first_step_feeds(split, count)
    cached = 3
    caches = {name: np.random.default_rng(split_seed(split)).standard_normal((count, LLAMA_KV_HEADS, cached, LLAMA_HEAD_DIM), np.float32)
              for name in LLAMA_CACHE_INPUTS}
    mask = np.concatenate([np.ones((count, cached), np.int64), feeds["attention_mask"]], axis=1)
    return {**feeds, "attention_mask": mask, "position_ids": feeds["position_ids"] + cached, **caches}


def pixel_feeds(split: str, count: int) -> Feeds:
    """``pixel_values``: ImageNet-normalised photo crops at 224."""
    return {"pixel_values": photos.imagenet_batch(count, IMAGE_SIZE, seed=4000 + split_seed(split))}


def mel_feeds(split: str, count: int) -> Feeds:
    """``input_features``: log-mel features of speech-like clips."""
    return {"input_features": audio.log_mel(count, seed=5000 + split_seed(split))}


TEXT_ENCODER_OUTPUTS = ["last_hidden_state", "sentence_embedding"]
REQUIRES = ("transformers",)
TEXT_REQUIRES = (*REQUIRES, *text.TOKENIZER_PACKAGES)
IMAGE_REQUIRES = (*REQUIRES, "scikit-learn", "matplotlib", "pillow")
LM_SAMPLES = dict.fromkeys(SPLITS, 16)  # 16 x 32 positions x 30,522 logits is already 62 MB per split
LLAMA_KV_HEADS, LLAMA_HEAD_DIM, LLAMA_LAYERS = 2, 16, 2
LLAMA_CACHE_INPUTS = [f"past_key_values.{layer}.{kind}" for layer in range(LLAMA_LAYERS) for kind in ("key", "value")]
CACHE_AXES = {"attention_mask": {1: "past_sequence_length + sequence_length"}, "position_ids": {1: "sequence_length"},
              **{name: {2: "past_sequence_length"} for name in LLAMA_CACHE_INPUTS},
              **{name.replace("past_key_values", "present"): {2: "past_sequence_length + sequence_length"} for name in LLAMA_CACHE_INPUTS}}


def _causal_lm(name: str, description: str, build, *, half: bool = False) -> list[Entry]:
    """A decoder's two exports, judged by next-token agreement on tokenised sentences (``half``: in float16)."""
    return exported.entries(
        name, description, build, inputs=text.sentences, output_names=["logits"],
        fidelity=fidelity.next_token("logits", "attention_mask"), requires=TEXT_REQUIRES,
        dynamic_axes={**TEXT_AXES, "logits": {1: "sequence"}}, samples=LM_SAMPLES, half=half,
    )


ENTRIES: list[Entry] = [
    *exported.entries(
        "hf-bert", "transformers BertModel (2 layers, d=128, random seeded), mean-pooled", bert,
        inputs=sentence_feeds, output_names=TEXT_ENCODER_OUTPUTS, fidelity=fidelity.embeddings("sentence_embedding"),
        requires=TEXT_REQUIRES, dynamic_axes=TEXT_AXES,
    ),
    *exported.entries(
        "hf-distilbert", "transformers DistilBertModel (2 layers, d=128, random seeded), mean-pooled", distilbert,
        inputs=text.sentences, output_names=TEXT_ENCODER_OUTPUTS, fidelity=fidelity.embeddings("sentence_embedding"),
        requires=TEXT_REQUIRES, dynamic_axes=TEXT_AXES,
    ),
    *exported.entries(
        "hf-deberta", "transformers DebertaV2Model (2 layers, d=128, random seeded), mean-pooled", deberta,
        inputs=text.sentences, output_names=TEXT_ENCODER_OUTPUTS, fidelity=fidelity.embeddings("sentence_embedding"),
        requires=TEXT_REQUIRES, dynamic_axes=TEXT_AXES,
    ),
    *_causal_lm("hf-gpt2", "transformers GPT2LMHeadModel (2 layers, d=128, random seeded), no KV cache", gpt2),
    *_causal_lm("hf-qwen2", "transformers Qwen2ForCausalLM (2 layers, d=128, 8 query / 2 key-value heads, q/k/v biases, "
                "random seeded), no KV cache", qwen2),
    *_causal_lm("hf-llama", "transformers LlamaForCausalLM (2 layers, d=128, 8 query / 2 key-value heads, random seeded), "
                "no KV cache", llama),
    *exported.entries(
        "hf-llama-kv", "transformers LlamaForCausalLM as hf-llama, with its KV cache as inputs and outputs (Optimum's "
        "past_key_values.N.key -> present.N.key; the dynamo export names the mask's length a dim of its own), fed first "
        "steps", llama_with_cache,
        inputs=first_step_feeds, output_names=["logits", *(n.replace("past_key_values", "present") for n in LLAMA_CACHE_INPUTS)],
        fidelity=fidelity.next_token("logits", "attention_mask"), requires=TEXT_REQUIRES,
        dynamic_axes={**TEXT_AXES, "input_ids": {1: "sequence_length"}, "logits": {1: "sequence_length"}, **CACHE_AXES},
        samples=LM_SAMPLES, trace=later_step_feeds,
    ),
    *_causal_lm("hf-llama-fp16", "transformers LlamaForCausalLM as hf-llama, in float16 (weights and logits)", llama, half=True),
    *exported.entries(
        "hf-whisper-encoder", "transformers WhisperEncoder (2 layers, d=128, 80 mel x 2 s, random seeded)", whisper_encoder,
        inputs=mel_feeds, output_names=["last_hidden_state", "utterance_embedding"],
        fidelity=fidelity.embeddings("utterance_embedding"), requires=REQUIRES,
    ),
    *exported.entries(
        "hf-vit", "transformers ViTForImageClassification (224, patch 16, 2 layers, d=128, random seeded)", vit,
        inputs=pixel_feeds, output_names=["logits"], fidelity=fidelity.top1("logits"), requires=IMAGE_REQUIRES,
    ),
    *exported.entries(
        "hf-convnext", "transformers ConvNextForImageClassification (depths 1-1-2-1, 32-256 wide, random seeded)", convnext,
        inputs=pixel_feeds, output_names=["logits"], fidelity=fidelity.top1("logits"), requires=IMAGE_REQUIRES,
    ),
    *exported.entries(
        "hf-convnext-fp16", "transformers ConvNextForImageClassification as hf-convnext, in float16 (weights, pixels, logits)",
        convnext, inputs=pixel_feeds, output_names=["logits"], fidelity=fidelity.top1("logits"), requires=IMAGE_REQUIRES,
        half=True,
    ),
    *exported.entries(
        "hf-efficientnet", "transformers EfficientNetForImageClassification (B0 at 0.5 width/depth, random seeded)", efficientnet,
        inputs=pixel_feeds, output_names=["logits"], fidelity=fidelity.top1("logits"), requires=IMAGE_REQUIRES,
        revision=2,  # BatchNorm scales 1 (logits near 1e-33 before)
    ),
]
