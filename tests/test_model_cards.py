"""The model cards (tfsts/models/cards.py): one table, everything else derived from it.

The cards' counts are checked twice: against numbers written here independently of
the cards (the reference's computed / published counts and the hand counts of the
Hara families, with where each comes from), and against the models as built
(`count_params`, `count_macs`; cheap rows by default, every row under -m slow). The
README's model table and docs/inflation.md's pairs table are the cards' own tables.
"""

from __future__ import annotations

import inspect
import os

import keras
import pytest

from tfsts import models
from tfsts.flops import count_macs
from tfsts.models import cards
from tfsts.models import inflation as inf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (model, settings) -> (params, GMACs, GMAC tolerance): written independently of the cards.
# "C": the reference architecture built in PyTorch and counted (400-way head, conv + linear
# MACs); "P": published; "hand": counted by hand from the architecture (params; the GMACs
# are this repository's earlier measurements).
INDEPENDENT = {
    ("resnet3d_10", ()): (14_430_800, 5.642, 5e-4),  # hand
    ("resnet3d_18", ()): (33_235_280, 8.296, 5e-4),  # C, Hara CVPR 2018 branch, shortcut A
    ("resnet3d_18", (("shortcut_type", "B"),)): (33_409_104, 8.308, 5e-4),  # C, Hara master
    ("resnet3d_34", ()): (63_544_912, 12.685, 5e-4),
    ("resnet3d_34", (("shortcut_type", "B"),)): (63_718_736, 12.696, 5e-4),
    ("resnet3d_50", ()): (47_018_576, 10.069, 5e-4),
    ("resnet3d_101", ()): (86_064_720, 13.891, 5e-4),
    ("resnet3d_152", ()): (118_223_440, 18.611, 5e-4),
    ("resnet3d_200", ()): (127_423_056, 25.805, 5e-4),
    ("preact_resnet3d_200", ()): (127_419_088, 25.805, 5e-4),  # hand
    ("wide_resnet3d_50", ()): (158_248_272, 26.240, 5e-4),  # hand
    ("resnext3d_101", ()): (48_340_816, 9.568, 5e-4),  # hand
    ("densenet3d_121", ()): (11_696_528, 10.404, 5e-4),  # hand
    ("densenet3d_201", ()): (26_143_120, 11.243, 5e-4),  # hand
    # C, pytorchvideo at 256 px; its head applies the classifier at 2x2 positions (+0.003 G).
    ("i3d_r50", ()): (28_043_472, 37.106, 4e-3),
    ("slowonly_r50", ()): (32_454_096, 54.521, 4e-3),
    ("slowfast_r50_4x16", ()): (34_480_216, 36.099, 4e-3),
    ("slowfast_r50_8x8", ()): (34_566_488, 65.712, 4e-3),
    ("r2plus1d_18", ()): (33_370_839, 20.7, 0.05),  # P: VMZ 33.3M / 20.7 G; params: VMZ's PyTorch blocks
    ("r2plus1d_34", ()): (63_697_175, 38.089, 5e-4),  # C, VMZ
    ("ircsn_50", (("sts", False),)): (13_131_152, 42.309, 5e-4),  # C, VMZ blocks, layers [3, 4, 6, 3]
    ("ircsn_50", ()): (13_131_152, 80.344, 5e-4),  # STS on, temporal strides 1 (measured)
    ("ircsn_101", (("sts", False),)): (22_213_776, 56.468, 5e-4),  # C params (pytorchvideo csn_r101)
    ("ircsn_152", (("sts", False),)): (29_703_568, 74.046, 5e-4),  # C, VMZ
    ("ipcsn_50", (("sts", False),)): (14_396_176, 47.652, 5e-4),
    ("ipcsn_101", (("sts", False),)): (24_601_616, 63.559, 5e-4),
    ("ipcsn_152", (("sts", False),)): (33_016_592, 83.295, 5e-4),  # C, VMZ
    ("x3d_s", ()): (3_794_274, 1.963, 5e-4),  # C, pytorchvideo hub.x3d_s
    ("x3d_m", ()): (3_794_274, 4.732, 5e-4),  # C, pytorchvideo hub.x3d_m
    ("videoswin_tiny", ()): (27_663_894 + 768 * 400 + 400, 17.457, 5e-4),  # keras-cv backbone + our head; every window counted (hand count in tests/test_flops.py)
}
CHEAP = {("x3d_s", ()), ("resnet3d_10", ())}


def _rows():
    for card in cards.CARDS.values():
        for counts in card.counts:
            yield card, counts, (card.name, tuple(sorted(counts.settings.items())))


ROWS = list(_rows())


def test_card_table_is_consistent():
    assert models.available_models() == sorted(cards.CARDS)
    for card in cards.CARDS.values():
        builder = card.builder()
        assert callable(builder) and "input_shape" in inspect.signature(builder).parameters, card.name
        assert set(card.kwargs) <= set(inspect.signature(builder).parameters), card.name
        assert (card.sts is None) == ("sts" not in inspect.signature(builder).parameters), card.name
        if card.head is not None:
            assert callable(card.head_builder())
        t, h, w, c = card.input_shape
        assert c == 3 and min(t, h, w) > 0


def test_source_relations_are_derived_from_the_cards():
    inflatable = {name for name, card in cards.CARDS.items() if card.source}
    assert set(inf.TARGETS) == inflatable == {row["target"] for row in cards.supported_pairs()}
    assert set(inf.NO_COUNTERPART) == set(cards.CARDS) - inflatable
    for name in inflatable:
        assert name in cards.SOURCES[cards.CARDS[name].source].targets
    assert cards.SOURCES["ResNet50"].targets == (
        "resnet3d_50", "i3d_r50", "slowonly_r50", "slowfast_r50_4x16", "slowfast_r50_8x8"
    )
    assert cards.CARDS["slowfast_r50_8x8"].prefix == "slow_" and cards.CARDS["i3d_r50"].prefix == ""
    assert cards.CARDS["densenet3d_121"].normalization_for(inflated=True) == "torch"
    assert cards.CARDS["i3d_r50"].normalization_for(inflated=True) == "caffe"
    assert cards.CARDS["i3d_r50"].normalization_for(inflated=False) == "torch"


def test_no_name_prefix_matching():
    """Reasons come from a model's own card: a name that merely starts like one has none."""
    assert cards.no_counterpart_reason("ircsn_50") and cards.no_counterpart_reason("resnet3d_18")
    for name in ("ircsn_50_custom", "resnet3d_18x", "x3d", "i3d_r50"):
        assert cards.no_counterpart_reason(name) is None, name
    assert "no model card with a 2D source" in str(inf.no_counterpart_error("ircsn_50_custom"))


def test_card_rules_are_enforced():
    with pytest.raises(ValueError, match="exactly one of source= and no_counterpart="):
        cards.ModelCard("m", "tfsts.models.x3d", "x3d_backbone", {}, (4, 32, 32, 3))
    with pytest.raises(ValueError, match="unknown 2D source"):
        cards.ModelCard("m", "tfsts.models.x3d", "x3d_backbone", {}, (4, 32, 32, 3), source="ResNet18")
    with pytest.raises(ValueError, match="Unknown model 'resnet3d_51'"):
        cards.model_card("resnet3d_51")


def test_card_counts_equal_the_independent_numbers():
    assert {key for _, _, key in ROWS} == set(INDEPENDENT)
    for card, counts, key in ROWS:
        params, gmacs, tolerance = INDEPENDENT[key]
        assert counts.params == params, key
        assert abs(counts.gmacs - gmacs) <= tolerance, (key, counts.gmacs, gmacs)


def _measure(card, counts):
    model = models.build_model(card.name, 400, input_shape=counts.input_shape, **counts.settings)
    result = models.count_params(model), count_macs(model) / 1e9
    keras.backend.clear_session()
    return result


def _check_measured(card, counts):
    params, gmacs = _measure(card, counts)
    assert params == counts.params, card.name
    assert abs(gmacs - counts.gmacs) <= 0.5 * 10 ** -counts.decimals + 1e-9, (card.name, gmacs, counts.gmacs)


@pytest.mark.parametrize("card,counts", [r[:2] for r in ROWS if r[2] in CHEAP], ids=lambda v: getattr(v, "name", ""))
def test_cheap_cards_measure_as_stated(card, counts):
    _check_measured(card, counts)


@pytest.mark.slow
@pytest.mark.parametrize(
    "card,counts", [r[:2] for r in ROWS if r[2] not in CHEAP], ids=[f"{r[0].name}-{i}" for i, r in enumerate(ROWS) if r[2] not in CHEAP]
)
def test_every_card_measures_as_stated(card, counts):
    _check_measured(card, counts)


def test_readme_and_docs_tables_are_the_cards_tables():
    if not os.path.exists(os.path.join(REPO, "README.md")):  # Bazel runfiles carry only declared data
        pytest.skip("README.md / docs are not in this test's runfiles (BUILD: test_support data)")
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(REPO, "docs", "inflation.md")) as f:
        docs = f.read()
    assert cards.model_table() in readme, "README's model table: regenerate with tfsts.models.cards.model_table()"
    assert cards.inflation_table() in docs, "docs/inflation.md: regenerate with tfsts.models.cards.inflation_table()"
