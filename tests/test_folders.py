"""Folder detection table: what a person typing a query would expect to be searched."""

from __future__ import annotations

import pytest

from image_search.serve.folders import detect

FOLDERS = [
    "animals",
    "nature",
    "city_streets",
    "Food-Photos",
    "people",
    "vehicles",
    "SeaLife",
    "boxes",
    "photos",
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("show me nature photos", ["nature"]),
        ("find animal pictures", ["animals"]),
        ("animals", ["animals"]),
        ("an ANIMAL in the snow", ["animals"]),
        ("city streets at night", ["city_streets"]),
        ("a city street", ["city_streets"]),
        ("busy city", []),  # only one of the folder's two words
        ("food", ["Food-Photos"]),
        ("food pics", ["Food-Photos"]),
        ("nature photos", ["nature"]),  # "photos" alone names no folder
        ("red car in the city", []),
        ("a vehicle on a road", ["vehicles"]),
        ("sea life", ["SeaLife"]),
        ("cardboard box", ["boxes"]),
        ("people and animals", ["animals", "people"]),
        ("animals in nature", ["animals", "nature"]),
        ("photos", []),
        ("", []),
        ("🐱 猫 مرحبا", []),
        ("nature-walk", ["nature"]),
    ],
)
def test_detection(query: str, expected: list[str]) -> None:
    assert sorted(detect(query, FOLDERS)) == sorted(expected)
