import random
import time
from typing import Any

import pytest

from services.ingester.dedupers.base import NearDuplicateDetector
from services.ingester.dedupers.minhash import MinHashNearDuplicates, choose_bands, shingles

PARAGRAPH = (
    "Loopline streams the traffic of language model applications into curated training data. "
    "Every request and response that an application sends is captured as a record, validated "
    "against the schema, stripped of personal data and secrets, and checked against the records "
    "seen recently so that the same prompt asked again and again by many users does not flood "
    "the dataset with copies of itself. Records that survive these steps are routed to the flows "
    "that want them, where generator models write alternative answers, judge models rate every "
    "answer on a rubric of aspects such as helpfulness, correctness and tone, and people review "
    "the ratings that matter most in an annotation tool before anything is exported. The exported "
    "datasets come in the shapes that fine-tuning libraries expect, from plain supervised pairs "
    "to preference pairs with a chosen and a rejected answer, and every row can be traced back to "
    "the record it came from, the models that produced it and the people who reviewed it. Because "
    "the pipeline runs continuously, a team can watch the quality of its data improve week after "
    "week instead of assembling a dataset by hand once a quarter and hoping that it is still "
    "representative of what users actually ask."
)


def jaccard(first: str, second: str, shingle_size: int = 5) -> float:
    a, b = set(shingles(first, shingle_size)), set(shingles(second, shingle_size))
    return len(a & b) / len(a | b)


def random_texts(count: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocabulary = [f"word{i}" for i in range(5000)]
    return [" ".join(rng.choices(vocabulary, k=words)) for _ in range(count)]


def test_is_a_near_duplicate_detector() -> None:
    detector: NearDuplicateDetector = MinHashNearDuplicates()
    assert detector.check_and_add("a", PARAGRAPH) is None


def test_lightly_edited_paragraph_is_a_near_duplicate() -> None:
    edited = (
        PARAGRAPH.replace("Every request", "Each request")
        .replace("helpfulness, correctness", "helpfulness; correctness")
        .upper()
        .replace(" ", "  \n")
    )
    assert edited != PARAGRAPH
    assert jaccard(PARAGRAPH, edited) >= 0.9  # each edit changes up to 5 of ~200 shingles
    detector = MinHashNearDuplicates()
    assert detector.check_and_add("original", PARAGRAPH) is None
    assert detector.check_and_add("other", "Something else entirely, about cats and dogs.") is None
    assert detector.check_and_add("edited", edited) == "original"
    assert len(detector) == 2  # the near-duplicate is not remembered


def test_more_edits_need_a_lower_threshold() -> None:
    edited = (
        PARAGRAPH.replace("Every request", "Each request")
        .replace("flood the", "swamp the")
        .replace("helpfulness, correctness", "helpfulness; correctness")
        .replace("once a quarter", "once a year")
        .replace("week after week", "month after month")
    )
    assert 0.7 < jaccard(PARAGRAPH, edited) < 0.8
    strict, loose = MinHashNearDuplicates(), MinHashNearDuplicates(threshold=0.6)
    for detector in (strict, loose):
        assert detector.check_and_add("original", PARAGRAPH) is None
    assert strict.check_and_add("edited", edited) is None
    assert loose.check_and_add("edited", edited) == "original"


def test_exact_duplicate_and_case_and_whitespace() -> None:
    detector = MinHashNearDuplicates()
    assert detector.check_and_add("a", PARAGRAPH) is None
    assert detector.check_and_add("b", PARAGRAPH) == "a"
    assert detector.check_and_add("c", "  " + PARAGRAPH.lower().replace(" ", "\t ")) == "a"


def test_unrelated_texts_are_not_near_duplicates() -> None:
    detector = MinHashNearDuplicates()
    texts = [
        PARAGRAPH,
        "The weather in Lisbon is mild in winter and warm in summer, with little rain in July.",
        "Write a Python function that returns the n-th Fibonacci number using memoisation.",
        "Explain the difference between a process and a thread to a first-year student.",
        "Translate 'where is the train station' into French, German and Portuguese, please.",
        *random_texts(50, 60, seed=7),
    ]
    for i, text in enumerate(texts):
        assert detector.check_and_add(str(i), text) is None


def test_half_of_a_text_is_not_a_near_duplicate() -> None:
    words = PARAGRAPH.split()
    detector = MinHashNearDuplicates()
    assert detector.check_and_add("whole", PARAGRAPH) is None
    assert detector.check_and_add("half", " ".join(words[: len(words) // 2])) is None


@pytest.mark.parametrize(("threshold", "expected"), [(0.45, "first"), (0.5, "first"), (0.7, None)])
def test_threshold_is_respected(threshold: float, expected: str | None) -> None:
    # With one-word shingles and distinct words, the true Jaccard similarity is exactly 0.6.
    first = " ".join(f"w{i}" for i in range(100))
    second = " ".join(f"w{i}" for i in range(25, 125))
    assert jaccard(first, second, shingle_size=1) == pytest.approx(0.6)
    detector = MinHashNearDuplicates(threshold=threshold, num_perm=256, shingle_size=1)
    assert detector.similarity(first, second) == pytest.approx(0.6, abs=0.08)
    assert detector.check_and_add("first", first) is None
    assert detector.check_and_add("second", second) == expected


def test_the_most_similar_earlier_text_wins() -> None:
    detector = MinHashNearDuplicates(threshold=0.2, shingle_size=1)
    far = " ".join(f"w{i}" for i in range(0, 100))
    near = " ".join(f"w{i}" for i in range(300, 400))
    assert detector.check_and_add("far", far) is None
    assert detector.check_and_add("near", near) is None
    probe = " ".join(f"w{i}" for i in [*range(40, 100), *range(300, 395)])
    # Both pass the threshold (true Jaccard 0.31 and 0.59); `near` is the closer one.
    assert jaccard(probe, far, 1) == pytest.approx(60 / 195)
    assert jaccard(probe, near, 1) == pytest.approx(95 / 160)
    assert detector.similarity(probe, far) >= 0.2
    assert detector.check_and_add("probe", probe) == "near"


def test_window_evicts_the_oldest() -> None:
    texts = random_texts(5, 40, seed=3)
    detector = MinHashNearDuplicates(window=3)
    for i, text in enumerate(texts):
        assert detector.check_and_add(f"k{i}", text) is None
    assert len(detector) == 3
    # The two oldest are forgotten: seen again, they are new (and evict the next oldest).
    assert detector.check_and_add("again0", texts[0]) is None
    assert detector.check_and_add("again4", texts[4]) == "k4"
    assert detector.check_and_add("again3", texts[3]) == "k3"
    assert detector.check_and_add("again2", texts[2]) is None  # evicted by `again0`
    assert len(detector) == 3
    # The band buckets hold exactly the remembered entries.
    in_buckets = set().union(*(ids for bucket in detector._buckets for ids in bucket.values()))
    assert in_buckets == set(detector._entries)


def test_a_key_seen_again_replaces_its_text() -> None:
    first, second = random_texts(2, 40, seed=5)
    detector = MinHashNearDuplicates()
    assert detector.check_and_add("k", first) is None
    assert detector.check_and_add("k", second) is None
    assert len(detector) == 1
    assert detector.check_and_add("other", first) is None
    assert detector.check_and_add("again", second) == "k"


def test_short_texts() -> None:
    detector = MinHashNearDuplicates(shingle_size=5)
    assert shingles("Hello   THERE world", 5) == ["hello there world"]
    assert shingles("", 5) == [""]
    assert detector.check_and_add("a", "Hello there world") is None
    assert detector.check_and_add("b", "hello  there\nworld") == "a"
    assert detector.check_and_add("c", "hello there") is None  # one shingle each, not shared
    assert detector.check_and_add("d", "hello there world!") is None
    assert detector.check_and_add("e", "") is None
    assert detector.check_and_add("f", "   ") == "e"


def test_shingles() -> None:
    assert shingles("a b c d a b c", 3) == ["a b c", "b c d", "c d a", "d a b"]
    assert shingles("A  b\tC", 3) == ["a b c"]


def test_deterministic_given_the_seed() -> None:
    texts = random_texts(20, 30, seed=11)
    one, two = MinHashNearDuplicates(seed=42), MinHashNearDuplicates(seed=42)
    other = MinHashNearDuplicates(seed=43)
    for text in texts:
        assert (one.signature(text) == two.signature(text)).all()
        assert not (one.signature(text) == other.signature(text)).all()
    edited = PARAGRAPH.replace("Every request", "Each request")
    results = []
    for detector in (one, two):
        detector.check_and_add("p", PARAGRAPH)
        results.append(detector.check_and_add("e", edited))
    assert results == ["p", "p"]


def test_signature_shape_and_range() -> None:
    detector = MinHashNearDuplicates(num_perm=64)
    signature = detector.signature(PARAGRAPH)
    assert signature.shape == (64,)
    assert int(signature.max()) < 2**61 - 1


def test_choose_bands() -> None:
    for threshold in (0.3, 0.5, 0.7, 0.85, 0.95, 1.0):
        for num_perm in (16, 64, 128, 256):
            bands, rows = choose_bands(threshold, num_perm)
            assert bands * rows <= num_perm
            assert 1 - (1 - threshold**rows) ** bands >= 0.99
    assert choose_bands(0.85, 128) == (16, 8)
    detector = MinHashNearDuplicates()
    assert (detector.bands, detector.rows) == (16, 8)


def test_performance_sanity() -> None:
    texts = random_texts(10_000, 30, seed=1)
    detector = MinHashNearDuplicates()
    start = time.perf_counter()
    found = [detector.check_and_add(str(i), text) for i, text in enumerate(texts)]
    elapsed = time.perf_counter() - start
    print(f"\n10k distinct texts checked and added in {elapsed:.2f}s")
    assert found == [None] * len(texts)
    assert len(detector) == 10_000


@pytest.mark.parametrize(
    "options",
    [
        {"threshold": 0},
        {"threshold": 1.5},
        {"threshold": "high"},
        {"num_perm": 0},
        {"num_perm": 2.5},
        {"shingle_size": 0},
        {"window": 0},
        {"window": True},
        {"seed": -1},
    ],
)
def test_bad_options(options: dict[str, Any]) -> None:
    name = next(iter(options))
    with pytest.raises(ValueError, match=name):
        MinHashNearDuplicates(**options)


def test_unknown_option_is_named() -> None:
    options: dict[str, Any] = {"threshold": 0.9, "bands": 4}
    with pytest.raises(TypeError, match="bands"):
        MinHashNearDuplicates(**options)


def test_a_forgotten_text_is_new_again() -> None:
    detector = MinHashNearDuplicates()
    assert detector.check_and_add("first", PARAGRAPH) is None
    detector.forget("first")
    detector.forget("never-seen")  # nothing to forget: no error
    assert len(detector) == 0
    assert detector.check_and_add("retry", PARAGRAPH) is None
    assert detector.check_and_add("copy", PARAGRAPH) == "retry"
