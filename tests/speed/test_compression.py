"""Dictionary 2: trained on the training corpus, measured on the held-out one (issue 18)."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.corpora import evaluation, training
from callhome.wire.messages import (
    CURRENT_DICTIONARY,
    Kind,
    current_form,
    decode_body,
    decode_content,
    encode_content,
    encode_message,
    load_dictionary,
    pack_message,
)

CONTENT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


def test_the_current_dictionary_ships_and_the_old_one_stays():
    assert CURRENT_DICTIONARY == 2
    current, old = load_dictionary(2), load_dictionary(1)
    assert current is not None and len(current.data) == 32 * 1024
    assert old is not None and old.data != current.data  # older clients still decode


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=12), CONTENT, max_size=8))
def test_any_content_round_trips_with_either_dictionary(content):
    for dictionary_id in (1, 2):
        dictionary = load_dictionary(dictionary_id)
        message = encode_message(Kind.REPORT, content, dictionary)
        raw = decode_body(message.body, message.compressed, dictionary)
        assert decode_content(raw) == content


def test_a_message_spooled_under_the_old_dictionary_goes_out_under_the_current_one():
    content = evaluation.corpus(1)[0]
    plain = encode_content(content)
    old = pack_message(Kind.REPORT, plain, load_dictionary(1))
    assert old.compressed
    sent = current_form(Kind.REPORT, old.body, True, plain)
    assert sent.compressed and sent.body != old.body
    assert decode_body(sent.body, True, load_dictionary(CURRENT_DICTIONARY)) == plain
    fresh = pack_message(Kind.REPORT, plain, load_dictionary(CURRENT_DICTIONARY))
    assert current_form(Kind.REPORT, fresh.body, True, plain).body == fresh.body  # kept
    assert current_form(Kind.REPORT, plain, False, plain).body == plain


def test_on_held_out_reports_the_new_dictionary_beats_the_old():
    reports = [cbor2.dumps(c, canonical=True) for c in evaluation.corpus(48)]
    sizes = {
        i: sum(len(pack_message(Kind.REPORT, r, load_dictionary(i)).body) for r in reports)
        for i in (1, 2)
    }
    assert sizes[2] < 0.95 * sizes[1]


def test_training_and_evaluation_corpora_share_no_report():
    train = {cbor2.dumps(c, canonical=True) for c in training.corpus(120)}
    held_out = {cbor2.dumps(c, canonical=True) for c in evaluation.corpus(48)}
    assert not train & held_out
    hosts = lambda corpus, key: {str(c.get(key)) for c in corpus}  # noqa: E731
    assert not hosts(training.corpus(120), "system") & hosts(evaluation.corpus(48), "host")


def test_the_shipped_dictionary_is_what_the_builder_makes():
    zstandard = pytest.importorskip("zstandard")
    if zstandard.__version__ != "0.25.0":
        pytest.skip("the dictionary was built with zstandard 0.25.0")
    from benchmarks.build_dictionary import build

    assert load_dictionary(2).data == build(2)
