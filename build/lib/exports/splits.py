"""Train / validation / test assignment by conversation: pure, deterministic from a seed."""

import hashlib


def split_of(conversation_id: int, *, seed: int, validation: float, test: float) -> str:
    """The split every row of this conversation goes to.

    A conversation's place on [0, 1) comes from sha256(seed, id), so it does not depend on which
    other conversations are exported or in which order: adding data never moves a conversation
    across splits, and no prompt ends up on two sides.
    """
    digest = hashlib.sha256(f"{seed}:{conversation_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    if point < test:
        return "test"
    if point < test + validation:
        return "validation"
    return "train"


class SplitCache(dict):
    """split_of, remembered per conversation (a conversation has many rows): `cache[id]`."""

    def __init__(self, *, seed: int, validation: float, test: float) -> None:
        super().__init__()
        self.seed, self.validation, self.test = seed, validation, test

    def __missing__(self, conversation_id: int) -> str:
        if len(self) >= 50_000:  # rows of a conversation mostly come together: bound memory
            self.clear()
        split = split_of(
            conversation_id, seed=self.seed, validation=self.validation, test=self.test
        )
        self[conversation_id] = split
        return split
