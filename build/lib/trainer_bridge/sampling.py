"""Drawing tokens: one per row, each row with its own top-k and top-p cuts and random draw.

Plain torch on tensors the decoding loop hands over; torch is imported inside the functions, so
importing this module costs the web process nothing. `sample_tokens` sorts no more of each row
than its cut needs (deciding on the host, which suits eager decoding); `sample_tokens_static`
draws the same tokens with shapes fixed in advance and no host decision, so a CUDA graph can
hold it, and says which rows it could not settle within its width.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Top-p sorts only this many highest-probability tokens; a row whose nucleus is not complete
# within them (or whose top_k is larger) falls back to sorting the whole vocabulary.
DEFAULT_CANDIDATES = 256


def row_seed(seed: int, sample_index: int) -> int:
    """A well-spread 63-bit seed for one sample of a seeded request."""
    digest = hashlib.blake2b(f"{seed}/{sample_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def sample_tokens(
    probs: torch.Tensor,
    *,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    uniforms: torch.Tensor,
    candidates: int = DEFAULT_CANDIDATES,
) -> torch.Tensor:
    """One token per row of `probs` (rows, vocab), drawn by inverse CDF with the row's uniform.

    top_k (rows,) of 0 means no top-k cut; top_p (rows,) of 1 means no nucleus cut. Rows with
    neither sample the whole vocabulary without sorting; the others sort only their `candidates`
    most likely tokens unless the cut needs more.
    """
    import torch

    vocab = probs.shape[-1]
    limit = torch.where((top_k > 0) & (top_k < vocab), top_k, torch.full_like(top_k, vocab))
    ranked = (limit < vocab) | (top_p < 1.0)
    if not bool(ranked.any()):
        return _inverse_cdf(probs, uniforms)
    if bool(ranked.all()):
        return _sample_ranked(probs, limit, top_p, uniforms, candidates)
    tokens = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
    plain = ~ranked
    tokens[plain] = _inverse_cdf(probs[plain], uniforms[plain])
    tokens[ranked] = _sample_ranked(
        probs[ranked], limit[ranked], top_p[ranked], uniforms[ranked], candidates
    )
    return tokens


def sample_tokens_static(
    probs: torch.Tensor,
    *,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    uniforms: torch.Tensor,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`sample_tokens` with no data-dependent control flow: (tokens, unsettled).

    Every row is drawn both ways, from the whole vocabulary and from its `width` most likely
    tokens under its cuts, and keeps the draw its settings call for. A row whose cut may reach
    past `width` (its nucleus is not complete within it and its top_k allows more) is marked
    unsettled; its token is then not final, and the caller draws it again with
    `sample_tokens`. With `width` equal to the vocabulary no row is ever unsettled.
    """
    import torch

    vocab = probs.shape[-1]
    width = min(width, vocab)
    limit = torch.where((top_k > 0) & (top_k < vocab), top_k, torch.full_like(top_k, vocab))
    ranked = (limit < vocab) | (top_p < 1.0)
    plain = _inverse_cdf(probs, uniforms)
    values, indices = probs.topk(width, dim=-1)  # sorted, most likely first
    cumulative = values.cumsum(-1)
    rank = torch.arange(width, device=probs.device)
    keep = (rank < limit.unsqueeze(-1)) & ((cumulative - values) < top_p.unsqueeze(-1))
    choice = _inverse_cdf(values * keep, uniforms)
    cut = indices.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
    unsettled = ranked & (limit > width) & (cumulative[:, -1] < top_p)
    return torch.where(ranked, cut, plain), unsettled


def _inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """The token whose cumulative-probability interval holds uniform * total, for each row."""
    import torch

    cdf = probs.cumsum(-1)
    target = (uniforms * cdf[:, -1]).unsqueeze(-1)
    # right=True never lands on a zero-probability token: its interval is empty.
    index = torch.searchsorted(cdf, target, right=True).clamp_(max=probs.shape[-1] - 1)
    return index.squeeze(-1)


def _sample_ranked(
    probs: torch.Tensor,
    limit: torch.Tensor,
    top_p: torch.Tensor,
    uniforms: torch.Tensor,
    candidates: int,
) -> torch.Tensor:
    """Draws under top-k/top-p cuts, sorting no more of each row than its cut needs.

    Widths grow: the most likely token alone (enough whenever it holds top_p, the common case
    for a confident model), then `candidates`, then the whole vocabulary, each for the rows the
    previous width could not settle.
    """
    import torch

    vocab = probs.shape[-1]
    tokens = probs.new_empty(0, dtype=torch.long)  # filled by the first width, for every row
    pending: torch.Tensor | None = None  # None: every row
    for width in (1, candidates, vocab):
        rows = probs if pending is None else probs[pending]
        row_limit = limit if pending is None else limit[pending]
        row_top_p = top_p if pending is None else top_p[pending]
        width = min(vocab, max(width, 1), int(row_limit.max()))
        values, indices = rows.topk(width, dim=-1)  # sorted, most likely first
        cumulative = values.cumsum(-1)
        rank = torch.arange(width, device=probs.device)
        # A token stays if it is within top_k and the tokens before it hold less than top_p.
        keep = (rank < row_limit.unsqueeze(-1)) & ((cumulative - values) < row_top_p.unsqueeze(-1))
        choice = _inverse_cdf(values * keep, uniforms if pending is None else uniforms[pending])
        drawn = indices.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
        # Settled unless the cut may reach past this width: more tokens allowed, p not reached.
        short = (row_limit > width) & (cumulative[:, -1] < row_top_p)
        settled = ~short
        if pending is None:
            tokens = drawn
            pending = short.nonzero().squeeze(-1)
        else:
            tokens[pending[settled]] = drawn[settled]
            pending = pending[short]
        if pending.numel() == 0 or width == vocab:
            break
    return tokens
