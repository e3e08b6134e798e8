import pytest

from imagekit import config
from imagekit.errors import ConfigError

BASE = '[[images]]\nname = "base"\n'


def test_precedence_flag_over_env_over_file_over_default(project):
    path = project('[registry]\nurl = "file.example:5000"\n' + BASE)
    assert config.load(path, env={}).registry.url == "file.example:5000"
    assert config.load(path, env={}).lock.python == "3.11.2"  # default
    env = {"IMAGEKIT_REGISTRY_URL": "env.example"}
    cfg = config.load(path, env=env)
    assert (cfg.registry.url, cfg.origins["registry.url"]) == ("env.example", "IMAGEKIT_REGISTRY_URL")
    cfg = config.load(path, env=env, overrides={"registry.url": "flag.example", "lock.python": None})
    assert (cfg.registry.url, cfg.origins["registry.url"]) == ("flag.example", "flag")
    assert cfg.origins["lock.python"] == "default"


def test_env_values_are_typed(project):
    path = project(BASE)
    cfg = config.load(path, env={"IMAGEKIT_PROJECT_VERSION": "7", "IMAGEKIT_REGISTRY_INSECURE": "true"})
    assert cfg.project.version == 7 and cfg.registry.insecure is True
    with pytest.raises(ConfigError, match="IMAGEKIT_PROJECT_VERSION.*whole number"):
        config.load(path, env={"IMAGEKIT_PROJECT_VERSION": "seven"})
    with pytest.raises(ConfigError, match="IMAGEKIT_REGISTRY_INSECURE.*true or false"):
        config.load(path, env={"IMAGEKIT_REGISTRY_INSECURE": "maybe"})


@pytest.mark.parametrize("toml, named", [
    ('[registry]\nurll = "x"\n' + BASE, "registry.urll"),
    ('[registy]\nurl = "x"\n' + BASE, "registy"),
    ('[project]\nversion = "six"\n' + BASE, "project.version"),
    ('[project]\nversion = true\n' + BASE, "project.version"),
    ('[[images]]\nname = "base"\ncolour = "red"\n', "images[0].colour"),
    ('[[images]]\nrepository = "x"\n', "images[0].name"),
    ('[[images]]\nname = "a"\nparent = "nope"\n', "images.a.parent"),
    ('[[images]]\nname = "a"\nparent = "b"\n[[images]]\nname = "b"\nparent = "a"\n', "images.a.parent"),
    ('[[images]]\nname = "a"\n[[images]]\nname = "a"\n', "used twice"),
    ('[lock]\nresolver = "poetry"\n' + BASE, "lock.resolver"),
    ('[[environments]]\nname = "desa"\n' + BASE, "environments[0].project"),
    ("", "at least one"),
    ("this is = = not toml", "not valid TOML"),
])
def test_bad_config_names_key_and_file(project, toml, named):
    path = project(toml)
    with pytest.raises(ConfigError) as e:
        config.load(path, env={})
    assert named in str(e.value)
    assert e.value.exit_code == 2
    if "TOML" not in named:
        assert str(path) in str(e.value)


def test_secrets_are_refused_in_the_file(project):
    path = project('[registry]\npassword = "hunter2"\n' + BASE)
    with pytest.raises(ConfigError, match="IMAGEKIT_REGISTRY_PASSWORD"):
        config.load(path, env={})
    assert config.load(project(BASE), env={"IMAGEKIT_REGISTRY_PASSWORD": "s"}).registry.password == "s"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="no imagekit.toml"):
        config.find(tmp_path)


def test_images_and_environments(project, tmp_path):
    cfg = config.load(project(), env={})
    ray = cfg.image("ray")
    assert (ray.parent, ray.repository, ray.context) == ("base", "ray", tmp_path / "images" / "ray")
    assert ray.requirements == tmp_path / "images" / "ray" / "requirements.in"
    assert [(e.name, e.immutable) for e in cfg.environments] == [("desa", False), ("prod", True)]
    with pytest.raises(ConfigError, match="(?s)no image named 'spark'.*base, ray, notebook"):
        cfg.image("spark")


def test_repository_config_loads():
    from helpers import ROOT
    cfg = config.load(ROOT / "imagekit.toml", env={})
    assert [i.name for i in cfg.images] == ["base", "ray", "notebook", "s3", "mlflow"]
    assert [i.name for i in cfg.images if not i.shared] == ["s3", "mlflow"]
    assert [e.project for e in cfg.environments] == ["mlops-desa", "mlops-test", "mlops-prod"]


def test_the_old_base_section_says_it_is_now_os(project):
    with pytest.raises(ConfigError, match=r"section \[base\] is now \[os\]"):
        config.load(project('[base]\ntag = "x"\n' + BASE), env={})


def test_a_file_that_is_not_utf8_is_a_config_error(project):
    path = project(BASE)
    path.write_bytes(b'[project]\norg = "sun\xe1t"\n' + BASE.encode())
    with pytest.raises(ConfigError, match="not UTF-8") as e:
        config.load(path, env={})
    assert e.value.exit_code == 2


def test_a_misspelled_variable_is_warned_about_with_the_likely_one(project):
    cfg = config.load(project(BASE), env={"IMAGEKIT_REGISTRY_URLL": "x", "IMAGEKIT_CONFIG": "",
                                          "IMAGEKIT_LOCK_PYTHON": "3.11.2"})
    assert cfg.warnings == ("IMAGEKIT_REGISTRY_URLL is not an imagekit setting and is ignored "
                            "(did you mean IMAGEKIT_REGISTRY_URL?)",)


def test_choices_and_lists_are_typed(project):
    with pytest.raises(ConfigError, match="lock.resolver.*must be one of uv, pip-tools"):
        config.load(project(BASE), env={"IMAGEKIT_LOCK_RESOLVER": "poetry"})
    cfg = config.load(project(BASE), env={"IMAGEKIT_VERIFY_BUCKETS": "a, b", "IMAGEKIT_VERIFY_STORED_BATCH_SIZE": "7"})
    assert cfg.verify.buckets == ("a", "b") and cfg.verify.stored_batch_size == 7


def test_the_built_in_os_image_default_is_the_one_that_works_debootstrap(tmp_path, monkeypatch):
    """With no [os] image in imagekit.toml, nothing is pulled: the OS image is bootstrapped (a slim
    python image has neither the lock's Python nor the platform's tools)."""
    from imagekit import osimage
    from support import write_project

    cfg = config.load(write_project(tmp_path))
    assert cfg.os.image == ""

    class Engine:
        pulled = []

        def image(self, ref):
            return None

        def pull(self, ref, auth=None):
            self.pulled.append(ref)
            return "not reachable"

    said = []
    monkeypatch.setattr(osimage, "bootstrap", lambda cfg, engine, on_line: (_ for _ in ()).throw(RuntimeError("here")))
    with pytest.raises(RuntimeError, match="here"):
        osimage.ensure(cfg, Engine(), on_line=said.append)
    assert Engine.pulled == [] and said == ["no os.image is set; bootstrapping Debian bookworm"]
