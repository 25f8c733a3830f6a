"""The parse caps: decoded stream bytes, object count and nesting depth stop a hostile PDF
with the limit's code, in process and in an isolated worker, and never pass."""

from __future__ import annotations

import base64
import os
from io import BytesIO

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PdfReadError
from pyhanko.pdf_utils.writer import PdfFileWriter

from bench.signer_bench import one_page_pdf
from tests.verifier.fixtures import foreign_root
from verifier import parsing
from verifier.isolation import VerifierPool
from verifier.limits import MIB, LimitExceededError, Limits
from verifier.policy import default_policy
from verifier.validate import verify_pdf
from verifier.worker import TASK, policy_options

PAD = 2 * MIB


def padded_catalog_pdf() -> bytes:
    """A valid PDF whose form dictionary sits in a compressed object stream with 2 MiB of
    hardly compressible padding, decoded when the signature fields are read."""
    writer = PdfFileWriter(stream_xrefs=True)
    objects = writer.prepare_object_stream()
    form = generic.DictionaryObject(
        {
            generic.NameObject("/Fields"): generic.ArrayObject(),
            generic.NameObject("/Padding"): generic.TextStringObject(
                base64.b64encode(os.urandom(PAD * 3 // 4)).decode()
            ),
        }
    )
    writer.root[generic.NameObject("/AcroForm")] = writer.add_object(form, obj_stream=objects)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def deeply_nested_pdf(depth: int) -> bytes:
    """A valid PDF whose catalog carries an array nested ``depth`` levels deep: written with
    a placeholder string of the same length, so every offset stays right."""
    writer = PdfFileWriter()
    writer.root[generic.NameObject("/Deep")] = generic.TextStringObject("x" * (2 * depth - 2))
    out = BytesIO()
    writer.write(out)
    placeholder = b"(" + b"x" * (2 * depth - 2) + b")"
    data = out.getvalue()
    assert data.count(placeholder) == 1
    return data.replace(placeholder, b"[" * depth + b"]" * depth)


def test_decoded_bytes_are_capped() -> None:
    # pyHanko's own expansion ratios stop a compression bomb; this is the absolute cap
    data = padded_catalog_pdf()
    policy = default_policy([foreign_root()])
    with pytest.raises(LimitExceededError) as caught:
        verify_pdf(data, policy, limits=Limits(max_decompressed_bytes=PAD // 2))
    assert caught.value.code == "verifier.decompressed_too_large"
    # the same file within the cap is read: unsigned, so nothing is proven
    assert verify_pdf(data, policy, limits=Limits()).indication.value == "INDETERMINATE"


def test_object_count_is_capped() -> None:
    policy = default_policy([foreign_root()])
    with pytest.raises(LimitExceededError, match="objects") as caught:
        verify_pdf(one_page_pdf(), policy, limits=Limits(max_objects=2))
    assert caught.value.code == "verifier.too_many_objects"


def test_nesting_depth_is_capped_in_a_worker() -> None:
    options = policy_options(default_policy([foreign_root()]))
    with VerifierPool(task=TASK, workers=1, limits=Limits(max_depth=32)) as pool:
        shallow = pool.submit(deeply_nested_pdf(20), options)
        deep = pool.submit(deeply_nested_pdf(40), options)
        # far past Python's own recursion limit: still the limit's answer, not a crash
        abyss = pool.submit(deeply_nested_pdf(5000), options)
    assert shallow.ok, shallow
    assert shallow.value["indication"] == "INDETERMINATE"  # read fine; no signature
    assert (deep.ok, deep.reason) == (False, "verifier.too_deep"), deep
    assert (abyss.ok, abyss.reason) == (False, "verifier.too_deep"), abyss


def test_a_comment_to_the_end_of_the_data_is_refused_not_read_for_ever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pyHanko's own reader loops for ever here (an object stream may end so); the guard
    # in the workers refuses it and reads every other comment as pyHanko does.
    monkeypatch.setattr(generic, "read_object", generic.read_object)  # restored afterwards
    monkeypatch.setattr(parsing, "_installed_depth", None)
    parsing.install_parse_guards(Limits().max_depth)
    with pytest.raises(PdfReadError, match="comment"):
        generic.read_object(BytesIO(b"%no end of line"), None)
    assert generic.read_object(BytesIO(b"%a comment\n/Name"), None) == "/Name"
    assert generic.read_object(BytesIO(b"[1 %inside\n 2]"), None) == [1, 2]
