"""The one JSON record reader: every way a record file can be wrong is one line naming the file."""
import pytest

from frontier.envs.records import read_json_object


@pytest.mark.parametrize("text, needle", [
    (None, "is missing: run frontier zoo"),
    ("{not json", "is unreadable: JSONDecodeError"),
    ("[1, 2]", "is not a policy card: a JSON object was expected, got list"),
    ('{"id": 1}', "is not a policy card: it lacks task"),
])
def test_a_bad_record_is_one_error_naming_the_file(tmp_path, text, needle):
    path = tmp_path / "card.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError, match=f"{path}.*{needle}"):
        read_json_object(path, "policy card", ("id", "task"), missing_hint="run frontier zoo")


def test_a_good_record_is_its_object(tmp_path):
    (tmp_path / "r.json").write_text('{"id": "a", "task": "t"}')
    assert read_json_object(tmp_path / "r.json", "policy card", ("id", "task")) == {"id": "a", "task": "t"}
