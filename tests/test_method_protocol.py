"""The method protocol (methods/base.py) and the fused-model protocol (models/protocol.py), checked
over every registered method: each declares its group, builds what it owns in its constructor, and
trains a model that implements the fused-model protocol."""

import pytest

from latefusion.methods import METHODS, Method
from latefusion.methods.base import GROUPS
from latefusion.methods.naive import Naive
from latefusion.pipeline import baseline_methods


@pytest.mark.parametrize("name", METHODS.names())
def test_every_registered_method_declares_its_own_group(name):
    cls = METHODS.get(name)
    assert "group" in cls.__dict__ and cls.group in GROUPS, (name, cls.__dict__.get("group"))


def test_a_method_class_without_a_group_is_refused_when_it_is_defined():
    with pytest.raises(TypeError, match=r"method class .*NoGroup \(name 'no-group'\) declares no group; declare `group = \.\.\.`"):
        class NoGroup(Method):
            name = "no-group"

    # Inheriting the group of a registered method is not declaring one: it would join that group's runs unasked.
    with pytest.raises(TypeError, match=r"Inherits \(name 'inherits'\) declares no group"):
        class Inherits(Naive):
            name = "inherits"

    with pytest.raises(TypeError, match=r"declares group = 'baselines'; .* one of 'unimodal', 'paper', 'baseline', 'other'"):
        class Misspelt(Method):
            name = "misspelt"
            group = "baselines"

    class Helper(Method):  # no name: a base for methods, not a method, so no group needed
        pass

    class Named(Helper):
        name = "named"
        group = "other"

    assert Named.group == "other" and "group" not in Helper.__dict__


def test_only_methods_declaring_baseline_join_methods_all():
    assert baseline_methods() == [n for n in METHODS.names() if METHODS.get(n).__dict__["group"] == "baseline"]
