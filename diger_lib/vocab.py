"""Token vocabulary of the generative recommender (section 3, Eq. 2).

An item's semantic ID is ``n_tokens`` codes (m RQ-VAE levels + 1 conflict code), each in [0, K).
Token ids: 0 = PAD (also T5's decoder start), 1 = EOS (unused by decoding: every ID has the same
length), and level ``j`` code ``c`` -> ``2 + j*K + c``, so each level owns a disjoint block of K tokens.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

PAD = 0
EOS = 1
N_SPECIAL = 2


class SIDVocab(NamedTuple):
    n_tokens: int  # tokens per item (m + 1 with the conflict code)
    codebook_size: int  # K

    @property
    def size(self) -> int:
        return N_SPECIAL + self.n_tokens * self.codebook_size

    def level_offset(self, level: int) -> int:
        """First token id of ``level``'s block: ``2 + level*K`` (the one place this offset is written)."""
        return N_SPECIAL + level * self.codebook_size

    def token(self, level: int, code: int) -> int:
        return self.level_offset(level) + code

    def level_offsets(self, device: torch.device | str | None = None) -> torch.Tensor:
        return N_SPECIAL + torch.arange(self.n_tokens, device=device) * self.codebook_size

    def codes_to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [..., n_tokens] in [0, K) -> token ids [..., n_tokens]."""
        if codes.shape[-1] != self.n_tokens:
            raise ValueError(f"codes have {codes.shape[-1]} levels, vocabulary expects {self.n_tokens}")
        return codes + self.level_offsets(codes.device)

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens - self.level_offsets(tokens.device)
