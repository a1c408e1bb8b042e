import csv
from collections import Counter

from fmkit.data.people import PERSONS_FILE, photo_persons

PHOTOS = ["astronaut", "hopper"] + [f"lfw{i:03d}" for i in range(100)]


def test_every_photo_has_exactly_one_person():
    with PERSONS_FILE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert Counter(r["photo"] for r in rows) == Counter(PHOTOS)
    assert {r["how"] for r in rows} <= {"descriptor+eye", "eye", "precaution", "single"}
    persons = photo_persons()
    assert sorted(persons) == sorted(PHOTOS)
    assert all(p.strip() for p in persons.values())


def test_some_person_has_several_photos():
    persons = photo_persons()
    assert len(set(persons.values())) < len(PHOTOS)
    assert persons["astronaut"] != persons["hopper"]
    sizes = Counter(persons.values())
    with PERSONS_FILE.open(newline="") as f:
        for r in csv.DictReader(f):
            assert (r["how"] == "single") == (sizes[r["person"]] == 1), r
