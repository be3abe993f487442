"""KV-cache block pool: counts of fixed-size blocks, as vLLM's paged KV cache allocates them.

A request whose KV cache holds `num_computed_tokens` and that computes `num_new_tokens` more this step needs
slots for `num_computed_tokens + num_new_tokens` tokens, rounded up to whole blocks::

    block_size = 4, num_computed_tokens = 6, num_new_tokens = 3

    tokens  | 0 1 2 3 | 4 5 6 7 | 8 . . . |
    held    |  block0 |  block1 |          <- ceil(6 / 4) = 2 blocks already held
    new                   ^ ^     ^          tokens 6, 7, 8
    needed  |  block0 |  block1 |  block2 |  <- ceil(9 / 4) = 3 blocks: 1 more to allocate

Only counts are modelled: which block holds what (copy-on-write, the null block vLLM reserves) is not. Prefix
caching is counted too: a request's cached prefix blocks are shared, so freeing it skips them. The pool answers "can't" with None; deciding to preempt is the scheduler's job.
"""

from __future__ import annotations


def num_blocks_for_tokens(num_tokens: int, block_size: int) -> int:
    """ceil(num_tokens / block_size)."""
    return -(-num_tokens // block_size)


class KVBlockPool:
    """A pool of `num_blocks` blocks of `block_size` tokens each."""

    __slots__ = ("num_blocks", "block_size", "num_free_blocks")

    def __init__(self, num_blocks: int, block_size: int = 16) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be >= 1")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.num_free_blocks = num_blocks

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    @property
    def usage(self) -> float:
        """Fraction of blocks in use (vLLM's `kv_cache_usage`)."""
        return (self.num_blocks - self.num_free_blocks) / self.num_blocks

    def num_new_blocks(self, num_computed_tokens: int, num_new_tokens: int) -> int:
        """Blocks to add so that `num_computed_tokens + num_new_tokens` tokens have slots (diagram above)."""
        bs = self.block_size
        return -(-(num_computed_tokens + num_new_tokens) // bs) - -(-num_computed_tokens // bs)

    def allocate_slots(self, num_computed_tokens: int, num_new_tokens: int) -> int | None:
        """Allocate the blocks the new tokens need; return how many, or None (allocating nothing) if the pool
        has too few free blocks."""
        n = self.num_new_blocks(num_computed_tokens, num_new_tokens)
        if n > self.num_free_blocks:
            return None
        self.num_free_blocks -= n
        return n

    def allocate_blocks(self, num_blocks: int) -> bool:
        """Allocate `num_blocks` blocks at once, or nothing (False) if too few are free."""
        if num_blocks > self.num_free_blocks:
            return False
        self.num_free_blocks -= num_blocks
        return True

    def free_blocks(self, num_blocks: int) -> None:
        """Return ``num_blocks`` blocks allocated with ``allocate_blocks`` (a whole static batch's, say)."""
        self.num_free_blocks += num_blocks
        assert self.num_free_blocks <= self.num_blocks, "freed more KV blocks than were allocated"

    def free_tokens(self, num_tokens: int, num_shared_blocks: int = 0) -> int:
        """Free the blocks of a request whose slots cover `num_tokens` tokens, less the `num_shared_blocks` of
        them it shares (a cached prefix, which stays); return how many blocks were freed."""
        n = -(-num_tokens // self.block_size) - num_shared_blocks
        self.num_free_blocks += n
        assert self.num_free_blocks <= self.num_blocks, "freed more KV blocks than were allocated"
        return n
