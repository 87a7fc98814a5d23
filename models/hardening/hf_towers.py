"""More ``transformers`` architectures, each exported by both exporters with seeded random weights: the encoders
people put behind search, captioning and speech (CLIP's text and image towers, T5's encoder, wav2vec2) and the
vision models whose attention is not ViT's (Swin's shifted windows, SegFormer's reduced keys and its per-pixel
classes).

T5 and BART with their decoders (cross-attention over the encoder's states) stand for the encoder-decoders.
Each one brought a different graph to the passes: CLIP's text tower pools at its end-of-text token (``ArgMax``
into ``Gather``) behind a causal mask of -inf, T5 adds a relative-position bias and RMS-normalises without a
mean, wav2vec2's convolutional front end normalises by groups, Swin rolls and pads its windows, SegFormer
upsamples its class map. Task measures: retrieval for the encoders, top-1 for Swin and for the encoder-decoders'
next tokens, per-pixel class IoU for SegFormer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from onnxcompress.models.hardening import audio, exported, fidelity, text
from onnxcompress.models.hardening.entry import Entry, Feeds, split_seed
from onnxcompress.models.hardening.hf import (
    IMAGE_REQUIRES, LM_SAMPLES, REQUIRES, TEXT_REQUIRES, ImageClassifier, pixel_feeds, seeded_model,
)
from onnxcompress.models.hardening.pooling import mean_pool

SMALL = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4}
TEXT_AXES = {"input_ids": {1: "sequence"}, "attention_mask": {1: "sequence"}}
SEQ2SEQ_AXES = {**TEXT_AXES, "decoder_input_ids": {1: "target"}, "logits": {1: "target"}}
TARGET_TOKENS = 8


class Field(nn.Module):
    """A transformers model and the field of its output to return; subclasses give ``forward`` its positional inputs
    (both exporters trace positional inputs)."""

    def __init__(self, model: nn.Module, field: str) -> None:
        super().__init__()
        self.model, self.field = model, field


class PixelField(Field):
    """``pixel_values`` -> the field."""

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The field of the model's output on the images."""
        return getattr(self.model(pixel_values=pixel_values), self.field)


class TextField(Field):
    """``input_ids``, ``attention_mask`` -> the field."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The field of the model's output on the tokens."""
        return getattr(self.model(input_ids=input_ids, attention_mask=attention_mask), self.field)


class MeanPooledText(nn.Module):
    """A text encoder -> the masked mean of its last hidden state (a sentence embedding)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Masked mean of the hidden states."""
        return mean_pool(self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask)


class MeanPooledAudio(nn.Module):
    """A speech encoder on raw waveforms -> the mean of its frame states (an utterance embedding)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """Mean of the frame states."""
        return self.model(input_values=input_values).last_hidden_state.mean(dim=1)


def clip_text():
    """CLIP's text tower with its projection (2 layers, d=128)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    # it pools at the first end-of-text token: the corpus's tokenizer (BERT's vocabulary) ends a sentence with [SEP]
    config = CLIPTextConfig(vocab_size=text.VOCAB_SIZE, max_position_embeddings=text.SEQUENCE, projection_dim=64,
                            bos_token_id=text.CLS_ID, eos_token_id=text.SEP_ID, pad_token_id=text.PAD_ID, **SMALL)
    return TextField(seeded_model(lambda: CLIPTextModelWithProjection(config)), "text_embeds")


def clip_vision():
    """CLIP's image tower with its projection (224, patch 32, 2 layers, d=128)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(image_size=224, patch_size=32, projection_dim=64, **SMALL)
    return PixelField(seeded_model(lambda: CLIPVisionModelWithProjection(config)), "image_embeds")


def t5_encoder():
    """T5 v1.1's encoder (gated GELU, relative-position bias; 2 layers, d=128), mean-pooled."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=text.VOCAB_SIZE, d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4,
                      feed_forward_proj="gated-gelu")
    return MeanPooledText(seeded_model(lambda: T5EncoderModel(config)))


def wav2vec2():
    """wav2vec2 on 2 s of 16 kHz audio (a 3-layer conv front end with GroupNorm, 2 layers, d=128), mean-pooled."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(conv_dim=(64, 64, 64), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=4, **SMALL)
    return MeanPooledAudio(seeded_model(lambda: Wav2Vec2Model(config)))


def swin():
    """Swin (224, patch 4, window 7, depths 2-2, 32-64 wide), 10 classes."""
    from transformers import SwinConfig, SwinForImageClassification

    config = SwinConfig(image_size=224, patch_size=4, embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=7, num_labels=10)
    return ImageClassifier(seeded_model(lambda: SwinForImageClassification(config)))


def segformer():
    """SegFormer (2 stages, 32-64 wide, keys reduced 4x then 2x), 5 classes at a quarter of the 224 input."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[4, 2], hidden_sizes=[32, 64], num_attention_heads=[1, 2],
                             decoder_hidden_size=64, num_labels=5)
    return ImageClassifier(seeded_model(lambda: SegformerForSemanticSegmentation(config)))


class Seq2Seq(nn.Module):
    """An encoder-decoder without a KV cache: source tokens and the target's first tokens -> next-token ``logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary at every target position."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids, use_cache=False).logits


def t5():
    """T5 v1.1 with its decoder (gated GELU, 2 + 2 layers, d=128)."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=text.VOCAB_SIZE, d_model=128, d_kv=32, d_ff=256, num_layers=2, num_decoder_layers=2, num_heads=4,
                      feed_forward_proj="gated-gelu", decoder_start_token_id=text.PAD_ID)
    return Seq2Seq(seeded_model(lambda: T5ForConditionalGeneration(config)))


def bart():
    """BART (2 + 2 layers, d=128)."""
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(vocab_size=text.VOCAB_SIZE, d_model=128, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256, max_position_embeddings=64,
                        pad_token_id=text.PAD_ID, bos_token_id=text.CLS_ID, eos_token_id=text.SEP_ID, decoder_start_token_id=text.SEP_ID)
    return Seq2Seq(seeded_model(lambda: BartForConditionalGeneration(config)))


def source_and_target(split: str, count: int) -> Feeds:
    """Tokenised sentences as the source and their first ``TARGET_TOKENS`` tokens as the decoder's input."""
    feeds = text.sentences(split, count)
    return {**feeds, "decoder_input_ids": feeds["input_ids"][:, :TARGET_TOKENS].copy()}


def waveforms(split: str, count: int) -> Feeds:
    """``input_values``: speech-like clips, 2 s at 16 kHz, normalised to zero mean and unit variance as wav2vec2 expects."""
    rng = np.random.default_rng(6000 + split_seed(split))
    clips = np.stack([audio.speech_like(rng) for _ in range(count)])
    return {"input_values": ((clips - clips.mean(1, keepdims=True)) / (clips.std(1, keepdims=True) + 1e-7)).astype(np.float32)}


ENTRIES: list[Entry] = [
    *exported.entries("hf-clip-text", "transformers CLIPTextModelWithProjection (2 layers, d=128, random seeded)", clip_text,
                      inputs=text.sentences, output_names=["text_embeds"], fidelity=fidelity.embeddings("text_embeds"),
                      requires=TEXT_REQUIRES, dynamic_axes=TEXT_AXES),
    *exported.entries("hf-clip-vision", "transformers CLIPVisionModelWithProjection (224, patch 32, 2 layers, d=128, random seeded)",
                      clip_vision, inputs=pixel_feeds, output_names=["image_embeds"], fidelity=fidelity.embeddings("image_embeds"),
                      requires=IMAGE_REQUIRES),
    *exported.entries("hf-t5-encoder", "transformers T5EncoderModel (v1.1 gated GELU, 2 layers, d=128, random seeded), mean-pooled",
                      t5_encoder, inputs=text.sentences, output_names=["sentence_embedding"],
                      fidelity=fidelity.embeddings("sentence_embedding"), requires=TEXT_REQUIRES, dynamic_axes=TEXT_AXES),
    *exported.entries("hf-t5", "transformers T5ForConditionalGeneration (v1.1, 2 + 2 layers, d=128, random seeded), no KV cache", t5,
                      inputs=source_and_target, output_names=["logits"], fidelity=fidelity.top1("logits"), requires=TEXT_REQUIRES,
                      dynamic_axes=SEQ2SEQ_AXES, samples=LM_SAMPLES),
    *exported.entries("hf-bart", "transformers BartForConditionalGeneration (2 + 2 layers, d=128, random seeded), no KV cache", bart,
                      inputs=source_and_target, output_names=["logits"], fidelity=fidelity.top1("logits"), requires=TEXT_REQUIRES,
                      dynamic_axes=SEQ2SEQ_AXES, samples=LM_SAMPLES),
    *exported.entries("hf-wav2vec2", "transformers Wav2Vec2Model (2 s at 16 kHz, 2 layers, d=128, random seeded), mean-pooled",
                      wav2vec2, inputs=waveforms, output_names=["utterance_embedding"],
                      fidelity=fidelity.embeddings("utterance_embedding"), requires=REQUIRES),
    *exported.entries("hf-swin", "transformers SwinForImageClassification (224, window 7, depths 2-2, random seeded)", swin,
                      inputs=pixel_feeds, output_names=["logits"], fidelity=fidelity.top1("logits"), requires=IMAGE_REQUIRES),
    *exported.entries("hf-segformer", "transformers SegformerForSemanticSegmentation (2 stages, 5 classes, random seeded)", segformer,
                      inputs=pixel_feeds, output_names=["logits"], fidelity=fidelity.mask_iou("logits"), requires=IMAGE_REQUIRES),
]
