"""The embedded corpus and user data: parallel, deterministic, and clear about bad input."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from finetune.data import TokenizedExample, load_languages
from finetune.data.corpus import DEFAULT_LANGUAGES, babel_rows, check_languages, number_row
from finetune.data.miniature import pretraining_texts, split_numbers, write_finetune_data
from finetune.errors import ConfigError, DataError


def _key(prompt: str) -> str:
    return prompt.split("|", 1)[1]


def test_every_language_expresses_the_same_content_in_the_same_order():
    keys = {lang: [_key(p) for p, _ in babel_rows(lang)] for lang in DEFAULT_LANGUAGES}
    assert all(keys[lang] == keys["en"] for lang in DEFAULT_LANGUAGES)
    values = {lang: [v for _, v in babel_rows(lang)] for lang in DEFAULT_LANGUAGES}
    # Parallel, yet really translated: the languages' values mostly differ from English.
    for lang in ("de", "ru", "ar", "fa"):
        same = sum(a == b for a, b in zip(values[lang], values["en"], strict=True))
        assert same < len(values["en"]) / 4, lang
    assert number_row("ru", 372) == ("ru|372=", "триста семьдесят два")
    # The README's example of the task.
    assert number_row("de", 372) == ("de|372=", "dreihundertzweiundsiebzig")


def test_the_split_is_disjoint_deterministic_and_seeded():
    split = split_numbers(numbers=300, eval_size=30, finetune_size=90, seed=0)
    parts = [set(split.pretrain), set(split.finetune), set(split.eval)]
    assert sum(map(len, parts)) == 300 and set().union(*parts) == set(range(300))
    assert split == split_numbers(300, 30, 90, seed=0)
    assert split.eval != split_numbers(300, 30, 90, seed=1).eval
    with pytest.raises(ConfigError, match="cannot cut 100 numbers"):
        split_numbers(100, 50, 50, seed=0)


def test_written_data_are_parallel_and_identical_when_rebuilt(tmp_path):
    split = split_numbers(numbers=120, eval_size=10, finetune_size=30, seed=3)
    languages = ("en", "de", "fa")
    for copy in ("a", "b"):
        write_finetune_data(tmp_path / copy, languages, split)
    for lang in languages:
        for name in ("train.jsonl", "eval.jsonl"):
            a = (tmp_path / "a" / lang / name).read_bytes()
            assert a == (tmp_path / "b" / lang / name).read_bytes()
    rows = {lang: [json.loads(line) for line in (tmp_path / "a" / lang / "train.jsonl")
                   .read_text(encoding="utf-8").splitlines()] for lang in languages}
    assert [r["prompt"] for r in rows["de"]] == [f"de|{n}=" for n in split.finetune]
    assert [_key(r["prompt"]) for r in rows["fa"]] == [_key(r["prompt"]) for r in rows["en"]]
    # Held-out numbers never reach pretraining: its number rows use the pretrain set only.
    texts = set(pretraining_texts(languages, split))
    assert not any(f"en|{n}={number_row('en', n)[1]}" in texts for n in split.eval)
    assert all(f"en|{n}={number_row('en', n)[1]}" in texts for n in split.pretrain)


def test_unknown_languages_are_named_before_any_work():
    with pytest.raises(DataError, match=r"no data for \['xx'\]"):
        check_languages(["en", "xx"])
    with pytest.raises(DataError, match="given twice"):
        check_languages(["en", "en"])


@pytest.fixture(scope="module")
def tokenizer(prepared_miniature):
    return AutoTokenizer.from_pretrained(prepared_miniature.base)


def test_prompt_completion_rows_mask_the_prompt(prepared_miniature, tokenizer):
    data = load_languages(prepared_miniature.data, ["de", "ar"], tokenizer)
    first = json.loads((prepared_miniature.data / "de" / "train.jsonl").read_text(
        encoding="utf-8").splitlines()[0])
    example = data["de"][0]
    assert isinstance(example, TokenizedExample)
    prompt_length = len(tokenizer(first["prompt"])["input_ids"])
    assert example.loss_mask == [0] * prompt_length + [1] * (len(example.input_ids) - prompt_length)
    assert example.input_ids[0] == tokenizer.bos_token_id
    assert example.input_ids[-1] == tokenizer.eos_token_id
    targets = [i for i, m in zip(example.input_ids, example.loss_mask, strict=True) if m]
    assert tokenizer.decode(targets, skip_special_tokens=True) == first["completion"]
    assert len(data["ar"]) == len(data["de"])


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _user_data(root, rows_by_language):
    for lang, rows in rows_by_language.items():
        for split in ("train", "eval"):
            _write(root / lang / f"{split}.jsonl", [json.dumps(r) for r in rows])
    return root


def test_text_rows_are_targets_everywhere(tmp_path, tokenizer):
    root = _user_data(tmp_path, {"en": [{"text": "en|12=twelve"}]})
    (example,) = load_languages(root, ["en"], tokenizer, split="eval")["en"]
    assert set(example.loss_mask) == {1}
    truncated = load_languages(root, ["en"], tokenizer, max_length=3)["en"][0]
    assert len(truncated.input_ids) == 3 == len(truncated.loss_mask)


@pytest.mark.parametrize(("lines", "message"), [
    (['{"prompt": "a", "completion": "b"}', "{not json"], r"train\.jsonl:2: not valid JSON"),
    (['{"prompt": "a"}'], r"train\.jsonl:1: a row needs \"text\" or both"),
    (['{"text": 3}'], r"train\.jsonl:1: \"text\" must be a string, got int"),
    (['["text"]'], r"train\.jsonl:1: a row must be a JSON object"),
    (['', '{"prompt": "a", "completion": "  "}'], r"train\.jsonl:2: \"completion\" is empty"),
    (["", "  "], r"train\.jsonl: the file is empty"),
])
def test_bad_rows_name_the_file_and_line(tmp_path, tokenizer, lines, message):
    _user_data(tmp_path, {"de": [{"text": "gut"}]})
    _write(tmp_path / "en" / "train.jsonl", lines)
    with pytest.raises(DataError, match=message) as caught:
        load_languages(tmp_path, ["de", "en"], tokenizer)
    assert str(tmp_path / "en" / "train.jsonl") in str(caught.value)


def test_missing_languages_files_splits_and_sources_are_named(tmp_path, tokenizer):
    _user_data(tmp_path, {"de": [{"text": "gut"}]})
    with pytest.raises(DataError, match=r"no data for language 'fr'.*\['de'\]"):
        load_languages(tmp_path, ["de", "fr"], tokenizer)
    (tmp_path / "de" / "eval.jsonl").unlink()
    with pytest.raises(DataError, match=r"eval\.jsonl: file not found"):
        load_languages(tmp_path, ["de"], tokenizer, split="eval")
    with pytest.raises(DataError, match="unknown split 'test'"):
        load_languages(tmp_path, ["de"], tokenizer, split="test")
    with pytest.raises(DataError, match="neither a directory nor a spec file"):
        load_languages(tmp_path / "nowhere", ["de"], tokenizer)


def test_a_prompt_that_fills_max_length_is_an_error(tmp_path, tokenizer):
    _user_data(tmp_path, {"en": [{"prompt": "en|123456789=", "completion": "many"}]})
    with pytest.raises(DataError, match=r"train\.jsonl:1: no target token left within"):
        load_languages(tmp_path, ["en"], tokenizer, max_length=4)


def test_a_datasets_spec_gives_the_same_examples_offline(prepared_miniature, tokenizer,
                                                        tmp_path):
    spec = {lang: {"path": "json",
                   "data_files": {s: str(prepared_miniature.data / lang / f"{s}.jsonl")
                                  for s in ("train", "eval")}}
            for lang in ("en", "ru")}
    # A relative path, resolved against the spec's folder; a split under another name.
    _user_data(tmp_path / "rel", {"ru": [{"prompt": "ru|1=", "completion": "один"}]})
    spec["ru"] = {"path": "json", "data_files": {"validation": "rel/ru/eval.jsonl"},
                  "splits": {"eval": "validation"}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    from_spec = load_languages(path, ["en"], tokenizer, split="eval")
    assert from_spec == load_languages(prepared_miniature.data, ["en"], tokenizer, split="eval")
    (ru,) = load_languages(path, ["ru"], tokenizer, split="eval")["ru"]
    assert ru.input_ids == tokenizer("ru|1=")["input_ids"] + tokenizer(
        "один", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    with pytest.raises(DataError, match=r"no data for language\(s\) \['de'\]"):
        load_languages(path, ["en", "de"], tokenizer)
    with pytest.raises(DataError, match="cannot load the train data of 'ru'"):
        load_languages(path, ["ru"], tokenizer)


def test_the_chat_template_frames_prompt_and_reply(prepared_miniature, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(prepared_miniature.base)
    _user_data(tmp_path, {"en": [{"prompt": "en|7=", "completion": "seven"}]})
    with pytest.raises(DataError, match="no chat template"):
        load_languages(tmp_path, ["en"], tokenizer, chat_template=True)
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}"
        "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")
    (example,) = load_languages(tmp_path, ["en"], tokenizer, chat_template=True)["en"]
    prompt = [i for i, m in zip(example.input_ids, example.loss_mask, strict=True) if not m]
    reply = [i for i, m in zip(example.input_ids, example.loss_mask, strict=True) if m]
    assert tokenizer.decode(prompt) == "<user>en|7=<assistant>"
    assert tokenizer.decode(reply) == "seven</s>"
    assert example.loss_mask == sorted(example.loss_mask)  # prompt first, then reply
    # Text rows are not chat turns: the template leaves them alone beside chat rows...
    _user_data(tmp_path, {"de": [{"text": "de|7=sieben"}]})
    text = load_languages(tmp_path, ["en", "de"], tokenizer, chat_template=True)["de"][0]
    assert tokenizer.decode(text.input_ids) == "<s>de|7=sieben</s>"
    # ...and on text rows alone the flag would do nothing, which is refused.
    with pytest.raises(DataError, match="--chat-template has no effect"):
        load_languages(tmp_path, ["de"], tokenizer, chat_template=True)
