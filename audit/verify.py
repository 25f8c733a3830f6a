"""Offline verification of the audit log, for an auditor with the public key and an export.

Standard library plus :mod:`audit.note` (``cryptography``): no database driver, no
SQLAlchemy at run time. An export directory holds::

    entries.jsonl               line i = the exact leaf bytes of index i (canonical JSON)
    checkpoints/<size>.note     every signed checkpoint, size zero-padded to 12 digits
    public-key.vkey             the log's verifier key, when the exporter knew it

:func:`verify_export` streams the entries through :class:`audit.merkle.TreeBuilder` (O(log n)
memory, one SHA-256 per leaf and per node), checks every checkpoint signature and that every
checkpoint's root is the root of the entries at its size. The result is a
:class:`VerificationReport` status object, never an exception: a bad log is an expected
outcome of an audit, not a failure of the auditor's program.
"""

from __future__ import annotations

import enum
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from audit.errors import AuditError, EventError, NoteError, NoteFailure
from audit.events import AuditEvent
from audit.merkle import TreeBuilder, leaf_hash
from audit.note import Checkpoint, NoteVerifier, open_checkpoint

if TYPE_CHECKING:
    from audit.log import AuditLog

ENTRIES_FILE = "entries.jsonl"
"""Name of the entries file in an export directory."""

CHECKPOINTS_DIR = "checkpoints"
"""Name of the folder of signed checkpoint notes in an export directory."""

VKEY_FILE = "public-key.vkey"
"""Name of the verifier key file in an export directory."""

_EXPORT_PAGE = 1000


class Finding(enum.Enum):
    """What a verification found wrong; the value is the stable code."""

    LEAF_MISMATCH = "audit.verify.leaf_mismatch"
    """Stored leaf bytes no longer hash to the stored leaf hash: the entry was edited."""

    INDEX_GAP = "audit.verify.index_gap"
    """Tree indices are not exactly 0..n-1: a leaf was deleted or one was inserted."""

    NODE_MISMATCH = "audit.verify.node_mismatch"
    """A stored subtree hash differs from the one recomputed from the leaves."""

    CHECKPOINT_MISMATCH = "audit.verify.checkpoint_mismatch"
    """A signed root is not the root of the entries at its size: entries were altered."""

    TRUNCATED = "audit.verify.truncated"
    """A signed checkpoint covers more entries than the log holds."""

    FORK = "audit.verify.fork"
    """Two signed views of the log cannot both be true (same size, other root, or a
    checkpoint that later signed checkpoints do not extend)."""

    BAD_SIGNATURE = "audit.verify.bad_signature"
    """A checkpoint's signature by a trusted key does not verify."""

    UNKNOWN_KEY = "audit.verify.unknown_key"
    """A checkpoint is signed by no trusted key (another key, perhaps under the log's name)."""

    MALFORMED = "audit.verify.malformed"
    """A file, line or checkpoint cannot be read as what it must be."""

    NON_CANONICAL = "audit.verify.non_canonical"
    """A leaf is not a canonical Kyso event (only checked in strict mode)."""


@dataclass(frozen=True, kw_only=True)
class VerificationReport:
    """The outcome of verifying a log: either everything checked out, or the first problem."""

    ok: bool
    """True when every check passed."""

    entries_checked: int
    """Number of entries hashed into the tree."""

    checkpoints_checked: int
    """Number of checkpoints whose signature was verified."""

    tree_size: int
    """Number of entries found in the log or the export."""

    first_bad_index: int | None = None
    """The first index known to be bad (for a range, its start), or None if not determinable."""

    reason: Finding | None = None
    """What was found wrong; None when :attr:`ok`."""

    message: str = ""
    """A human explanation naming the index, range or checkpoint."""

    @property
    def code(self) -> str | None:
        """The stable code of :attr:`reason`."""
        return self.reason.value if self.reason else None


@dataclass(frozen=True, kw_only=True)
class _Problem:
    reason: Finding
    message: str
    index: int | None = None


# -- checkpoints ---------------------------------------------------------------------------


def _open_all(
    notes: Iterable[tuple[str, str | bytes, int | None]],
    verifiers: Sequence[NoteVerifier],
    origin: str | None,
) -> tuple[list[Checkpoint], _Problem | None]:
    """Verify every note; ``notes`` yields (label, note, expected size or None)."""
    opened: list[Checkpoint] = []
    for label, note, expected_size in notes:
        try:
            checkpoint = open_checkpoint(note, verifiers, origin=origin).checkpoint
        except NoteError as ex:
            reason = {
                NoteFailure.BAD_SIGNATURE: Finding.BAD_SIGNATURE,
                NoteFailure.UNKNOWN_KEY: Finding.UNKNOWN_KEY,
                NoteFailure.NO_TRUSTED_SIGNATURE: Finding.UNKNOWN_KEY,
            }.get(ex.reason, Finding.MALFORMED)
            return opened, _Problem(reason=reason, message=f"checkpoint {label}: {ex.message}")
        if origin is None:
            origin = checkpoint.origin
        if expected_size is not None and checkpoint.size != expected_size:
            return opened, _Problem(
                reason=Finding.MALFORMED,
                message=f"checkpoint {label} is stored as size {expected_size} "
                f"but signs size {checkpoint.size}",
            )
        opened.append(checkpoint)
    opened.sort(key=lambda c: c.size)
    for older, newer in itertools.pairwise(opened):
        if older.size == newer.size and older.root_hash != newer.root_hash:
            return opened, _Problem(
                reason=Finding.FORK,
                message=f"two signed checkpoints of size {older.size} with different roots",
            )
    return opened, None


class _TreeCheck:
    """Streams leaf hashes and compares the root at every checkpoint size."""

    def __init__(self, checkpoints: Sequence[Checkpoint]) -> None:
        self.builder = TreeBuilder()
        self._checkpoints = sorted({c.size: c for c in checkpoints}.values(), key=lambda c: c.size)
        self._next = 0
        self.matched: dict[int, bool] = {}
        # The empty tree has no leaf to append; its checkpoint is checked up front.
        self._check_due()

    def _check_due(self) -> None:
        cps = self._checkpoints
        while self._next < len(cps) and cps[self._next].size == self.builder.size:
            cp = cps[self._next]
            self.matched[cp.size] = self.builder.root() == cp.root_hash
            self._next += 1

    def append(self, h: bytes) -> list[tuple[int, int, bytes]]:
        rows = self.builder.append(h)
        if self._next < len(self._checkpoints) and (
            self._checkpoints[self._next].size == self.builder.size
        ):
            self._check_due()
        return rows

    def problem(self) -> _Problem | None:
        """The first checkpoint that does not match, with the range it implicates."""
        size = self.builder.size
        previous = 0
        cps = self._checkpoints
        for position, cp in enumerate(cps):
            if cp.size > size:
                return _Problem(
                    reason=Finding.TRUNCATED,
                    index=size,
                    message=f"checkpoint {cp.size} was signed but the log holds only {size} "
                    f"entries: entries from index {size} are missing (or entries in "
                    f"[{previous}, {cp.size}) were removed)",
                )
            if not self.matched.get(cp.size, False):
                later = [c for c in cps[position + 1 :] if self.matched.get(c.size, False)]
                if later:
                    # The entries agree with a later signed checkpoint that cannot extend
                    # this one, so the log signed two incompatible histories.
                    return _Problem(
                        reason=Finding.FORK,
                        message=f"checkpoint {cp.size} is not extended by the signed "
                        f"checkpoint {later[0].size}, which the entries do match: the log "
                        "signed two different histories",
                    )
                return _Problem(
                    reason=Finding.CHECKPOINT_MISMATCH,
                    index=previous,
                    message=f"checkpoint {cp.size} does not match the entries: a bad entry "
                    f"lies somewhere in [{previous}, {cp.size})",
                )
            previous = cp.size
        return None


def _report(
    *,
    tree: _TreeCheck,
    checkpoints: int,
    problem: _Problem | None,
) -> VerificationReport:
    if problem is None:
        problem = tree.problem()
    if problem is None:
        return VerificationReport(
            ok=True,
            entries_checked=tree.builder.size,
            checkpoints_checked=checkpoints,
            tree_size=tree.builder.size,
            message=f"{tree.builder.size} entries and {checkpoints} checkpoints verified",
        )
    return VerificationReport(
        ok=False,
        entries_checked=tree.builder.size,
        checkpoints_checked=checkpoints,
        tree_size=tree.builder.size,
        first_bad_index=problem.index,
        reason=problem.reason,
        message=problem.message,
    )


def check_log(
    leaves: Iterable[tuple[int, bytes, bytes | None]],
    notes: Iterable[tuple[str, str | bytes, int | None]],
    verifiers: Sequence[NoteVerifier],
    *,
    origin: str | None = None,
    strict: bool = False,
    stored_nodes: Iterable[tuple[int, int, bytes]] | None = None,
) -> VerificationReport:
    """The checks shared by the export and the database verifier.

    ``leaves`` yields ``(index, leaf bytes, stored leaf hash or None)`` in index order;
    ``notes`` yields ``(label, signed note, stored size or None)``; ``stored_nodes`` (from a
    database) are compared with the subtree hashes recomputed from the leaves.
    """
    checkpoints, problem = _open_all(notes, verifiers, origin)
    tree = _TreeCheck(checkpoints if problem is None else [])

    def report(problem: _Problem | None) -> VerificationReport:
        return _report(tree=tree, checkpoints=len(checkpoints), problem=problem)

    if problem is not None:
        return report(problem)
    recomputed: dict[tuple[int, int], bytes] | None = {} if stored_nodes is not None else None
    for index, leaf, stored_hash in leaves:
        expected = tree.builder.size
        if index != expected:
            what = "missing (deleted)" if index > expected else "duplicated or out of order"
            return report(
                _Problem(
                    reason=Finding.INDEX_GAP,
                    index=min(index, expected),
                    message=f"index {expected} is {what}: found index {index} next",
                )
            )
        h = leaf_hash(leaf)
        if stored_hash is not None and stored_hash != h:
            return report(
                _Problem(
                    reason=Finding.LEAF_MISMATCH,
                    index=index,
                    message=f"entry {index} no longer hashes to its stored leaf hash: "
                    "it was edited",
                )
            )
        if strict:
            try:
                AuditEvent.from_leaf(leaf)
            except EventError as ex:
                return report(
                    _Problem(
                        reason=Finding.NON_CANONICAL,
                        index=index,
                        message=f"entry {index}: {ex.message} [{ex.code}]",
                    )
                )
        rows = tree.append(h)
        if recomputed is not None:
            for level, node_index, value in rows[1:]:
                recomputed[level, node_index] = value
    if recomputed is not None and stored_nodes is not None:
        problem = _compare_nodes(recomputed, stored_nodes, tree.builder.size)
    return report(problem)


def _compare_nodes(
    recomputed: dict[tuple[int, int], bytes],
    stored: Iterable[tuple[int, int, bytes]],
    size: int,
) -> _Problem | None:
    bad: list[tuple[int, int, int]] = []  # (end of range, level, index) of each bad node
    for level, index, value in stored:
        if (index + 1) << level > size:
            # Sequenced after the leaves were read (a live log keeps growing), or left over
            # from a truncation, which the checkpoints report with its index.
            continue
        if recomputed.pop((level, index), None) != value:
            bad.append(((index + 1) << level, level, index))
    # What is left was never stored: deleted nodes.
    bad.extend(((index + 1) << level, level, index) for level, index in recomputed)
    if not bad:
        return None
    # A bad leaf spoils all its ancestors; the bad node ending first is the tightest range.
    _, level, index = min(bad)
    start = index << level
    return _Problem(
        reason=Finding.NODE_MISMATCH,
        index=start,
        message=f"stored subtree ({level}, {index}) differs from the leaves: a bad entry lies "
        f"somewhere in [{start}, {(index + 1) << level})",
    )


# -- export --------------------------------------------------------------------------------


def _checkpoint_file(size: int) -> str:
    return f"{size:012d}.note"


def export(log: AuditLog, directory: str | os.PathLike[str], *, vkey: str | None = None) -> int:
    """Write the sequenced log to ``directory`` for offline audit; returns the entry count.

    Entries are written up to the current tree size, read in pages, so memory stays bounded.
    """
    root = Path(directory)
    (root / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
    size = log.size()
    with open(root / ENTRIES_FILE, "wb") as out:
        for start in range(0, size, _EXPORT_PAGE):
            for entry in log.entries(start, min(start + _EXPORT_PAGE, size)):
                # Canonical JSON escapes control characters, so a raw newline is corruption.
                if b"\n" in entry.leaf:
                    raise AuditError(f"entry {entry.index} contains a raw newline")
                out.write(entry.leaf + b"\n")
    for checkpoint in log.checkpoints():
        (root / CHECKPOINTS_DIR / _checkpoint_file(checkpoint.size)).write_text(
            checkpoint.note, encoding="utf-8", newline=""
        )
    if vkey is not None:
        (root / VKEY_FILE).write_text(vkey.strip() + "\n", encoding="utf-8")
    return size


def _read_entries(path: Path) -> Iterator[tuple[int, bytes, bytes | None]]:
    with open(path, "rb") as lines:
        for index, line in enumerate(lines):
            yield index, line[:-1] if line.endswith(b"\n") else line, None


def _read_notes(directory: Path) -> Iterator[tuple[str, str | bytes, int | None]]:
    for path in sorted(directory.glob("*.note")):
        stem = path.stem
        size = int(stem) if stem.isdigit() else None
        yield path.name, path.read_bytes(), size


def verify_export(
    directory: str | os.PathLike[str],
    verifiers: Sequence[NoteVerifier] | str | None = None,
    *,
    origin: str | None = None,
    strict: bool = False,
) -> VerificationReport:
    """Verify an export directory with the log's key (a vkey text, verifiers, or the
    directory's own ``public-key.vkey`` when None — only trust that one if it came with the
    export through a trusted channel).

    ``strict`` also parses every leaf as a canonical Kyso event, which is much slower than
    hashing alone.
    """
    root = Path(directory)
    empty = VerificationReport(ok=False, entries_checked=0, checkpoints_checked=0, tree_size=0)
    try:
        if verifiers is None:
            verifiers = (root / VKEY_FILE).read_text(encoding="utf-8")
        if isinstance(verifiers, str):
            verifiers = [NoteVerifier.from_vkey(line) for line in verifiers.split() if line]
    except (OSError, NoteError) as ex:
        return _replace(empty, Finding.MALFORMED, f"no usable verifier key: {ex}")
    entries = root / ENTRIES_FILE
    if not entries.is_file():
        return _replace(empty, Finding.MALFORMED, f"{ENTRIES_FILE} is missing")
    return check_log(
        _read_entries(entries),
        _read_notes(root / CHECKPOINTS_DIR),
        verifiers,
        origin=origin,
        strict=strict,
    )


def _replace(report: VerificationReport, reason: Finding, message: str) -> VerificationReport:
    return VerificationReport(
        ok=False,
        entries_checked=report.entries_checked,
        checkpoints_checked=report.checkpoints_checked,
        tree_size=report.tree_size,
        reason=reason,
        message=message,
    )
