import json

import pytest

from lm_saes.errors import DatasetError
from lm_saes.models.corpus import load_corpus, split_documents, write_jsonl


def test_shakespeare_loads_nonempty_documents():
    docs = load_corpus("shakespeare")
    assert len(docs) > 1000
    assert all(doc.strip() for doc in docs)
    assert any("Romeo" in doc for doc in docs)


def test_directory_of_txt_files_loads_in_name_order(tmp_path):
    (tmp_path / "b.txt").write_text("Second file.\n")
    (tmp_path / "a.txt").write_text("First paragraph.\n\nSecond paragraph.\n")
    (tmp_path / "notes.md").write_text("not a corpus file")
    assert load_corpus(str(tmp_path)) == ["First paragraph.\n\nSecond paragraph.", "Second file."]


def test_single_file_loads(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("Only this.")
    assert load_corpus(str(path)) == ["Only this."]


def test_missing_path_names_the_path(tmp_path):
    missing = tmp_path / "no_such_corpus"
    with pytest.raises(DatasetError, match="no_such_corpus"):
        load_corpus(str(missing))


def test_directory_without_txt_files_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="no .txt files"):
        load_corpus(str(tmp_path))


def test_paragraphs_are_grouped_up_to_max_chars():
    text = "\n\n".join(["a" * 40, "b" * 40, "c" * 40, "d" * 100])
    # 40 + 2 + 40 = 82 <= 90; adding the third would exceed; the long one stays whole.
    assert split_documents(text, max_chars=90) == [
        "a" * 40 + "\n\n" + "b" * 40,
        "c" * 40,
        "d" * 100,
    ]


def test_write_jsonl_round_trips(tmp_path):
    docs = ["plain", 'quotes " and\nnewlines', "naïve ünïcode"]
    path = tmp_path / "sub" / "docs.jsonl"
    write_jsonl(docs, path)
    assert [json.loads(line)["text"] for line in path.read_text().splitlines()] == docs
