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
    # Folder names that are also everyday words of a query.
    "a",
    "the",
    "news",
    "car",
    "caves",
    "taxis",
    "under_water",
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
        ("red car in the city", ["car"]),
        ("a vehicle on a road", ["vehicles"]),
        ("sea life", ["SeaLife"]),
        ("cardboard box", ["boxes"]),
        ("people and animals", ["animals", "people"]),
        ("animals in nature", ["animals", "nature"]),
        ("photos", []),
        ("", []),
        ("🐱 猫 مرحبا", []),
        ("nature-walk", ["nature"]),
        # Articles, pronouns, prepositions and one-letter words name no folder.
        ("a dog on a beach", []),
        ("what is the weather", []),
        ("the", []),
        ("a", []),
        ("i love it", []),
        ("x y z", []),
        # Such words count on neither side: "under_water" is named by "water".
        ("fish in the water", ["under_water"]),
        ("under the bridge", []),
        # Plurals meet their singulars, but a folder's name never becomes another word.
        ("new cars", ["car"]),
        ("a car", ["car"]),
        ("latest news", ["news"]),
        ("something new", []),
        ("a cafe", []),  # caves → cave, not cafe
        ("a cave", ["caves"]),
        ("taxi rank", ["taxis"]),
        ("animal news", ["animals", "news"]),
    ],
)
def test_detection(query: str, expected: list[str]) -> None:
    assert sorted(detect(query, FOLDERS)) == sorted(expected)
