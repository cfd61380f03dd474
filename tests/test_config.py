import pytest

from edge_agent.config import ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "edge-agent.toml"
    path.write_text(text)
    return path


def test_defaults_and_paths_relative_to_the_file(tmp_path):
    config = load_config(write(tmp_path, 'collector = "gw-0001"\n[buffer]\nbudget_mb = 2\n'))
    assert config.collector == "gw-0001"
    assert config.key.path == tmp_path / "collector.key"
    assert config.buffer.path == tmp_path / "buffer.sqlite"
    assert config.buffer.budget_bytes == 2 * 1024 * 1024


def test_every_problem_is_named_by_key(tmp_path):
    path = write(tmp_path, 'collector = "gw/1"\n[buffer]\nbudget_mb = 0\nbudgt = 5\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    keys = [key for key, _ in info.value.problems]
    assert keys == ["collector", "buffer.budget_mb", "buffer.budgt"]
    assert str(path) in str(info.value)


def test_missing_collector(tmp_path):
    with pytest.raises(ConfigError, match="collector: Field required"):
        load_config(write(tmp_path, "[buffer]\n"))


def test_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="syntax"):
        load_config(write(tmp_path, "collector = \n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
