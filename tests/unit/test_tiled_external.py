"""The Tiled writer's external arrays: the data source id comes from the registration's answer."""

from types import SimpleNamespace

import pytest

from runstream.consumers.tiled.external import registered_id


def node(data_sources):
    return SimpleNamespace(item={"attributes": {"data_sources": data_sources}})


def test_the_id_in_the_registration_answer_is_used():
    assert registered_id(node([{"id": 7, "mimetype": "application/x-hdf5"}])) == 7


@pytest.mark.parametrize(
    "answer",
    [None, [], [{"mimetype": "application/x-hdf5"}], [{"id": "7"}], [{"id": 1}, {"id": 2}]],
    ids=["no-sources", "empty", "no-id", "id-not-int", "two-sources"],
)
def test_an_answer_without_one_clear_id_leaves_it_to_be_read_back(answer):
    assert registered_id(node(answer)) is None


def test_an_item_without_attributes_leaves_it_to_be_read_back():
    assert registered_id(SimpleNamespace(item={})) is None
