"""Dictionaries 2 and 3: trained on the training corpus, measured on the held-out one
(issue 18). 3 adds the agent's own messages to 2's training."""

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


def test_the_current_dictionary_ships_and_the_old_ones_stay():
    assert CURRENT_DICTIONARY == 3
    current = load_dictionary(3)
    assert current is not None and len(current.data) == 32 * 1024
    for old_id in (1, 2):  # older clients still decode
        old = load_dictionary(old_id)
        assert old is not None and old.data != current.data


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=12), CONTENT, max_size=8))
def test_any_content_round_trips_with_either_dictionary(content):
    for dictionary_id in (1, 2, 3):
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


def test_on_held_out_agent_events_dictionary_3_beats_2_and_costs_reports_nothing():
    events = [cbor2.dumps(c, canonical=True) for c in evaluation.agent_events(60)]
    reports = [cbor2.dumps(c, canonical=True) for c in evaluation.corpus(48)]

    def total(corpus: list[bytes], dictionary_id: int) -> int:
        return sum(
            len(pack_message(Kind.REPORT, r, load_dictionary(dictionary_id)).body) for r in corpus
        )

    assert total(events, 3) < 0.7 * total(events, 2)
    assert total(reports, 3) <= total(reports, 2)


def test_held_out_agent_events_are_not_in_the_training_corpus():
    train = {cbor2.dumps(c, canonical=True) for c in training.agent_corpus()}
    held_out = evaluation.agent_events()
    assert not train & {cbor2.dumps(c, canonical=True) for c in held_out}
    trained_checks = {c["check"] for c in training.agent_corpus() if "check" in c}
    assert not trained_checks & {c["check"] for c in held_out}


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

    for dictionary_id in (2, 3):
        assert load_dictionary(dictionary_id).data == build(dictionary_id)


def _one_call(device_dictionary: int, centre_has: set[int], monkeypatch) -> tuple[bytes, bool]:
    """One message from a device compressing with `device_dictionary` to a centre that
    has only the dictionaries in `centre_has`: (the CBOR the centre stored, whether the
    body crossed compressed)."""
    import callhome.wire.server as server_module
    from callhome.wire.transfer import TransferConfig
    from tests.sessionpair import exchange, session_pair

    monkeypatch.setattr(
        server_module,
        "load_dictionary",
        lambda i: load_dictionary(i) if i in centre_has else None,
    )
    content = evaluation.agent_events(1)[0]
    plain = encode_content(content)
    message = pack_message(Kind.REPORT, plain, load_dictionary(device_dictionary))
    assert message.compressed
    config = TransferConfig(line_rate=9600, idle_timeout=60.0)
    centre, client, server = session_pair(config, dictionary_id=device_dictionary)
    client.queue(1, message, pack_message(Kind.REPORT, plain, None))
    client.finish()
    seen = [type(event).__name__ for event in exchange(client, server, centre, step=0.25)]
    assert "MessageAcknowledged" in seen
    (stored,) = centre.stored.values()
    return stored, client.dictionary_accepted


@pytest.mark.parametrize(
    ("device_dictionary", "centre_has", "compressed"),
    [
        pytest.param(3, {1, 2, 3}, True, id="current-both"),
        pytest.param(2, {1, 2, 3}, True, id="device-of-before"),
        pytest.param(3, {1, 2}, False, id="centre-of-before"),
    ],
)
def test_dictionary_3_is_negotiated_and_a_peer_of_before_still_gets_the_message(
    device_dictionary, centre_has, compressed, monkeypatch
):
    """A centre of before lacks dictionary 3: HS2 says so and the device sends the
    message uncompressed; a device of before (dictionary 2) is decoded with 2."""
    stored, accepted = _one_call(device_dictionary, centre_has, monkeypatch)
    assert accepted is compressed
    assert decode_content(stored) == evaluation.agent_events(1)[0]
