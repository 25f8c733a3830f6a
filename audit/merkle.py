"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and verification.

Standard library only, so that an auditor can run it offline.

Storage model assumed by the proof generators: the log keeps the hash of every *complete,
aligned* subtree, addressed as ``(level, index)`` and covering the leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf hashes. The right edge
of a tree whose size is not a power of two has no stored node; its hash is folded from the
O(log n) complete subtrees it is made of, so producing a proof costs O(log n) node reads and
never a recomputation of the tree. :func:`inclusion_proof_nodes` and
:func:`consistency_proof_nodes` list the coordinates a proof reads, so that storage can fetch
them all in one query and serve ``node`` from a dictionary.

Verification follows the algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 literally, after an
up-front check of the proof length so that a short or long proof is reported as such rather
than as a root mismatch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from audit.errors import ProofError, ProofFailure

HASH_SIZE = 32
"""Bytes in a SHA-256 hash, the only hash this log uses."""

MAX_TREE_SIZE = 2**63 - 1
"""Largest tree size or leaf index accepted; matches the uint64-with-headroom of other logs."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256 of the empty string, the root of the empty tree."""

NodeReader = Callable[[int, int], bytes]
"""``node(level, index)`` returns the stored hash of one complete, aligned subtree."""

Coordinate = tuple[int, int]
"""``(level, index)`` of a complete subtree."""

_sha256 = hashlib.sha256


def leaf_hash(leaf: bytes) -> bytes:
    """The RFC 9162 leaf hash: SHA-256(0x00 || leaf)."""
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


class TreeBuilder:
    """Streaming Merkle tree: O(log n) memory, amortised O(1) hashes per appended leaf.

    Keeps the roots of the perfect subtrees that make up the tree (a compact range), largest
    first. An offline verifier appends leaf hashes one by one and asks for :meth:`root` at
    every checkpoint size it meets; the sequencer stores what :meth:`append` returns.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @classmethod
    def resume(cls, size: int, node: NodeReader) -> TreeBuilder:
        """A builder positioned at ``size``, loaded from stored complete subtrees.

        Reads the nodes listed by :func:`frontier_nodes`, at most 63 of them.
        """
        builder = cls()
        builder._stack = [
            _checked_node(node, level, index) for level, index in frontier_nodes(size)
        ]
        builder._size = size
        return builder

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Append one leaf hash; return the complete subtrees it finished, lowest first.

        The first element is the leaf itself at level 0; each further one is a new parent.
        These are exactly the ``(level, index, hash)`` rows storage must add for the new leaf.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise ProofError(
                f"leaf hash is {len(leaf_hash)} bytes, expected {HASH_SIZE}",
                reason=ProofFailure.MALFORMED_HASH,
            )
        if self._size >= MAX_TREE_SIZE:
            raise ProofError("the tree is full", reason=ProofFailure.BAD_SIZE)
        index = self._size
        h = leaf_hash
        finished = [(0, index, h)]
        level = 0
        stack = self._stack
        while index & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            index >>= 1
            level += 1
            finished.append((level, index, h))
        stack.append(h)
        self._size += 1
        return finished

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes, discarding the finished-subtree rows."""
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """MTH of the leaves appended so far (``EMPTY_ROOT`` when there are none)."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        h = stack[-1]
        for left in reversed(stack[:-1]):
            h = _sha256(b"\x01" + left + h).digest()
        return h


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of a list of leaf hashes, per RFC 9162 §2.1.1."""
    builder = TreeBuilder()
    builder.extend(leaf_hashes)
    return builder.root()


# -- node arithmetic ----------------------------------------------------------------------


def _check_size(value: int, what: str) -> None:
    # bool is an int; a True tree size is a bug upstream, not size 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TREE_SIZE:
        raise ProofError(
            f"{what} must be an integer between 0 and {MAX_TREE_SIZE}, got {value!r}",
            reason=ProofFailure.BAD_SIZE,
        )


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_blocks(start: int, end: int) -> list[Coordinate]:
    """Complete subtrees covering ``[start, end)``, largest (leftmost) first.

    The range must be a node of the tree: ``start`` aligned to the smallest power of two
    that is at least ``end - start``. Then the blocks follow the binary digits of the length.
    """
    length = end - start
    if length <= 0 or start < 0 or start % (1 << (length - 1).bit_length()):
        raise ProofError(
            f"leaves [{start}, {end}) are not a subtree of the log",
            reason=ProofFailure.BAD_RANGE,
        )
    blocks: list[Coordinate] = []
    offset = start
    for level in range(length.bit_length() - 1, -1, -1):
        if length >> level & 1:
            blocks.append((level, offset >> level))
            offset += 1 << level
    return blocks


def frontier_nodes(size: int) -> list[Coordinate]:
    """Coordinates of the complete subtrees that make up a tree of ``size`` leaves."""
    _check_size(size, "tree size")
    return _range_blocks(0, size) if size else []


def _checked_node(node: NodeReader, level: int, index: int) -> bytes:
    h = node(level, index)
    if not isinstance(h, bytes) or len(h) != HASH_SIZE:
        raise ProofError(
            f"storage returned a malformed hash for node ({level}, {index})",
            reason=ProofFailure.MALFORMED_HASH,
        )
    return h


def _fold(blocks: Sequence[Coordinate], node: NodeReader) -> bytes:
    hashes = [_checked_node(node, level, index) for level, index in blocks]
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def subtree_hash(start: int, end: int, node: NodeReader) -> bytes:
    """MTH of leaves ``[start, end)`` from stored complete subtrees (O(log n) reads).

    ``[start, end)`` must be a node of the tree, as every range in RFC 9162's PATH and PROOF
    recursions is; for an incomplete right-edge subtree the hash is folded from the right.
    """
    _check_size(start, "range start")
    _check_size(end, "range end")
    return _fold(_range_blocks(start, end), node)


def root_at(size: int, node: NodeReader) -> bytes:
    """MTH of the first ``size`` leaves, from stored complete subtrees."""
    _check_size(size, "tree size")
    return subtree_hash(0, size, node) if size else EMPTY_ROOT


# -- proof plans: which subtrees, in which order -------------------------------------------

Plan = list[list[Coordinate]]
"""One entry per proof hash: the complete subtrees folded into that hash."""


def _inclusion_plan(index: int, size: int) -> Plan:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]), as subtree ranges; leaf-side hash first."""
    _check_size(index, "leaf index")
    _check_size(size, "tree size")
    if size == 0:
        raise ProofError(
            "the empty tree has no leaves to prove inclusion of", reason=ProofFailure.EMPTY_TREE
        )
    if index >= size:
        raise ProofError(
            f"leaf index {index} is not in a tree of size {size}",
            reason=ProofFailure.INDEX_OUT_OF_RANGE,
        )
    siblings: Plan = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _largest_power_of_two_below(end - start)
        if index < mid:
            siblings.append(_range_blocks(mid, end))
            end = mid
        else:
            siblings.append(_range_blocks(start, mid))
            start = mid
    siblings.reverse()
    return siblings


def _consistency_plan(first: int, second: int) -> Plan:
    """RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true), as subtree ranges."""
    _check_size(first, "first tree size")
    _check_size(second, "second tree size")
    if first > second:
        raise ProofError(
            f"cannot prove consistency from size {first} to the smaller size {second}",
            reason=ProofFailure.SIZE_ORDER,
        )
    if first == 0 or first == second:
        return []
    # SUBPROOF descends from the whole tree; each step contributes one hash that is emitted
    # after the hashes of the deeper steps, hence the reversal at the end.
    top_down: Plan = []
    start, end = 0, second
    m = first  # m counts leaves of the first tree within [start, end)
    whole = True  # RFC's b: the current subtree is still the whole of the first tree
    while m != end - start:
        k = _largest_power_of_two_below(end - start)
        if m <= k:
            top_down.append(_range_blocks(start + k, end))
            end = start + k
        else:
            top_down.append(_range_blocks(start, start + k))
            start += k
            m -= k
            whole = False
    if not whole:
        top_down.append(_range_blocks(start, end))
    top_down.reverse()
    return top_down


def inclusion_proof_nodes(index: int, size: int) -> list[Coordinate]:
    """Every ``(level, index)`` that :func:`inclusion_proof` will read, in reading order."""
    return [c for blocks in _inclusion_plan(index, size) for c in blocks]


def consistency_proof_nodes(first: int, second: int) -> list[Coordinate]:
    """Every ``(level, index)`` that :func:`consistency_proof` will read, in reading order."""
    return [c for blocks in _consistency_plan(first, second) for c in blocks]


def inclusion_proof(index: int, size: int, node: NodeReader) -> list[bytes]:
    """The RFC 9162 inclusion proof (audit path) of leaf ``index`` in the tree of ``size``."""
    return [_fold(blocks, node) for blocks in _inclusion_plan(index, size)]


def consistency_proof(first: int, second: int, node: NodeReader) -> list[bytes]:
    """The RFC 9162 consistency proof from tree size ``first`` to tree size ``second``.

    Empty when ``first`` is 0 or equal to ``second``: those are consistent by definition
    (given equal roots, which the verifier checks).
    """
    return [_fold(blocks, node) for blocks in _consistency_plan(first, second)]


# -- verification -------------------------------------------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, bytes) else type(value).__name__
        raise ProofError(
            f"{what} is {size} bytes, expected a {HASH_SIZE}-byte SHA-256 hash",
            reason=ProofFailure.MALFORMED_HASH,
        )


def _check_proof(proof: Sequence[bytes], expected: int) -> None:
    if len(proof) != expected:
        raise ProofError(
            f"the proof has {len(proof)} hashes, the tree sizes require {expected}",
            reason=ProofFailure.WRONG_LENGTH,
        )
    for i, h in enumerate(proof):
        _check_hash(h, f"proof[{i}]")


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Returns nothing on success; raises :class:`ProofError` with the precise reason otherwise.
    """
    _check_hash(leaf_hash, "the leaf hash")
    _check_hash(root, "the root")
    _check_proof(proof, len(_inclusion_plan(index, size)))
    # RFC 9162 §2.1.3.2, step by step.
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:  # unreachable after the length check; kept as the RFC states it
            raise ProofError("the proof is too long", reason=ProofFailure.WRONG_LENGTH)
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is too short", reason=ProofFailure.WRONG_LENGTH)
    if r != root:
        raise ProofError(
            f"leaf {index} with this proof leads to root {r.hex()}, not {root.hex()} "
            f"(tree size {size})",
            reason=ProofFailure.ROOT_MISMATCH,
        )


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``second`` leaves extends the tree of ``first`` leaves.

    Returns nothing on success; raises :class:`ProofError` with the precise reason otherwise.
    Equal sizes need equal roots and an empty proof; size 0 needs the empty root and an
    empty proof.
    """
    _check_hash(first_root, "the first root")
    _check_hash(second_root, "the second root")
    _check_proof(proof, len(_consistency_plan(first, second)))
    if first == 0:
        if first_root != EMPTY_ROOT:
            raise ProofError(
                "the first root is not the empty-tree root, yet the first size is 0",
                reason=ProofFailure.ROOT_MISMATCH,
            )
        return
    if first == second:
        if first_root != second_root:
            raise ProofError(
                f"two different roots for the same tree size {first}: "
                f"{first_root.hex()} and {second_root.hex()}",
                reason=ProofFailure.ROOT_MISMATCH,
            )
        return
    # RFC 9162 §2.1.4.2, step by step.
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first root is itself a node
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # unreachable after the length check; kept as the RFC states it
            raise ProofError("the proof is too long", reason=ProofFailure.WRONG_LENGTH)
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is too short", reason=ProofFailure.WRONG_LENGTH)
    if fr != first_root:
        raise ProofError(
            f"the proof does not lead to the first root {first_root.hex()} (size {first}); "
            f"it gives {fr.hex()}",
            reason=ProofFailure.ROOT_MISMATCH,
        )
    if sr != second_root:
        raise ProofError(
            f"the proof does not lead to the second root {second_root.hex()} (size {second}); "
            f"it gives {sr.hex()}",
            reason=ProofFailure.ROOT_MISMATCH,
        )
