import pytest

from eval.running.checkpoints import CheckpointError, from_objects, load_checkpoint


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_directory_without_a_config_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path)


def test_unloadable_weights_are_a_clear_error(tmp_path, base_checkpoint):
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in base_checkpoint.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot load a causal LM"):
        load_checkpoint(broken)


def test_hub_id_fails_cleanly_offline(network_guard):
    with pytest.raises(CheckpointError, match="cannot load a tokenizer"):
        load_checkpoint("no-such-org/no-such-model")
    assert network_guard.attempts == []


def test_in_memory_model_needs_its_tokenizer(in_memory):
    with pytest.raises(CheckpointError, match="tokenizer"):
        from_objects(in_memory.model, None)
