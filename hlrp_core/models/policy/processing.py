"""Stage-2 inputs built in hlrp (no transformers processor, no torchvision, no PIL):

- a hand-built tokenizer for the tiny model (``tokenizers`` BPE trained locally on a fixed corpus, wrapped in
  ``PreTrainedTokenizerFast`` with the SmolVLM image special tokens);
- image preprocessing: first frame, /255, aspect-preserving pad-resize to a square (pad 0 at the bottom/right),
  scaled to [-1, 1];
- the prompt: ``<fake_token_around_image><global-img><image>*N<fake_token_around_image>`` followed by the
  tokens of ``"{system_prompt}\\n{instruction}"`` (truncated), right-padded.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import torch
import torch.nn.functional as F

PAD, UNK = "<pad>", "<unk>"
IMAGE, FAKE_AROUND, GLOBAL_IMG, END_UTT = "<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"
#: Special tokens in id order: <pad> is id 0 (the configs' ``pad_token_id``).
SPECIAL_TOKENS = [PAD, UNK, IMAGE, FAKE_AROUND, GLOBAL_IMG, END_UTT] + [f"<ACT_{k}>" for k in range(8)]

#: Fixed training corpus of the tiny tokenizer: robot-instruction vocabulary + the alphabet, so any word still
#: tokenises (down to characters) and the tokenizer is identical on every machine.
_CORPUS_WORDS = (
    "you are a robot predict the latent action for instruction move push pull pick place put lift drop open close "
    "turn rotate slide grasp release reach go to toward towards away from on in into onto off of and then up down "
    "left right forward backward back front top bottom red green blue yellow orange purple white black gray pink "
    "block cube square ball object bowl cup drawer door gripper arm table can bottle plate sponge cloth button "
    "lever knob stack unstack small large big near far stay still nothing do hold wait slowly quickly a an it its "
    "clockwise counterclockwise center corner side edge target goal position location"
).split()


def build_tiny_tokenizer(vocab_size: int = 320) -> Any:
    """A deterministic BPE tokenizer (lower-cased, whitespace/punctuation pre-tokenised) trained here from
    ``_CORPUS_WORDS`` + the printable ASCII alphabet; special tokens of ``SPECIAL_TOKENS`` get ids 0.. in order."""
    import string

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=list(string.ascii_lowercase + string.digits + string.punctuation))
    corpus = [" ".join(_CORPUS_WORDS)] * 4 + list(_CORPUS_WORDS)
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK,
                                   additional_special_tokens=SPECIAL_TOKENS[2:])
    return fast


def tokenizer_hash(tokenizer: Any) -> str:
    """sha256 (first 16 hex) of the tokenizer's serialised vocabulary/model (stored in checkpoints/artifacts)."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pad_resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 or [0,1] float images ``[B,3,H,W]`` -> float ``[B,3,size,size]`` in [-1, 1].

    The longer side is resized to ``size`` (bilinear, aspect kept); the rest is padded with 0 (in [0,1] space, so
    -1 after scaling) at the bottom/right, as the predecessor's pad-resize did."""
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"pad_resize expects [B,3,H,W] images, got shape {tuple(frames.shape)}")
    x = frames.float()
    if frames.dtype == torch.uint8:
        x = x / 255.0
    h, w = x.shape[-2:]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
    x = F.pad(x, (0, size - nw, 0, size - nh), value=0.0)
    return x.clamp(0, 1) * 2.0 - 1.0


class PolicyProcessor:
    """Turns a batch (``frames`` [B,3,T,H,W] uint8, ``language`` list[str]) into backbone inputs.

    Args:
        tokenizer: a ``PreTrainedTokenizerFast`` holding the SmolVLM image special tokens.
        image_size: side of the pad-resized square (the vision tower's size).
        image_seq_len: ``<image>`` tokens per image (``configuration.image_tokens_per_image``).
        system_prompt: text before the instruction.
        max_text_tokens: truncation of the text part.
    """

    def __init__(self, tokenizer: Any, image_size: int, image_seq_len: int, system_prompt: str,
                 max_text_tokens: int = 48):
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.image_seq_len = int(image_seq_len)
        self.system_prompt = system_prompt
        self.max_text_tokens = int(max_text_tokens)
        ids = tokenizer.convert_tokens_to_ids([FAKE_AROUND, GLOBAL_IMG, IMAGE])
        unk = tokenizer.unk_token_id
        if any(i is None or (unk is not None and i == unk) for i in ids):
            raise ValueError(f"tokenizer lacks the image special tokens {FAKE_AROUND}, {GLOBAL_IMG}, {IMAGE}")
        self.fake_id, self.global_id, self.image_token_id = ids
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def prompt_text(self, instruction: str) -> str:
        return f"{self.system_prompt}\n{instruction}"

    def image_prefix_ids(self) -> list[int]:
        return [self.fake_id, self.global_id] + [self.image_token_id] * self.image_seq_len + [self.fake_id]

    def tokenize(self, instructions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` [B, L] (image prefix + truncated text, right-padded)."""
        prefix = self.image_prefix_ids()
        enc = self.tokenizer([self.prompt_text(s or "") for s in instructions], add_special_tokens=False,
                             truncation=True, max_length=self.max_text_tokens)["input_ids"]
        rows = [prefix + list(e) for e in enc]
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return ids, mask

    def images(self, frames: torch.Tensor) -> torch.Tensor:
        """First frame of ``frames`` [B,3,T,H,W] (or [B,3,H,W]) -> ``pixel_values`` [B,1,3,S,S] in [-1,1]."""
        first = frames[:, :, 0] if frames.dim() == 5 else frames
        return pad_resize(first, self.image_size).unsqueeze(1)

    def __call__(self, frames: torch.Tensor, language: Sequence[str]) -> dict[str, torch.Tensor]:
        ids, mask = self.tokenize(list(language))
        return {"input_ids": ids, "attention_mask": mask, "pixel_values": self.images(frames)}

    def manifest(self) -> dict:
        """The transform parameters recorded in checkpoints and the artifact."""
        return {"image_size": self.image_size, "image_seq_len": self.image_seq_len, "resize": "pad_resize",
                "pad_value": 0.0, "pad_side": "bottom_right", "scale": "[-1,1]", "frame": "first",
                "system_prompt": self.system_prompt, "max_text_tokens": self.max_text_tokens}
