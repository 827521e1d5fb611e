"""The Ray backend's and the autoscaler's settings, read from MOORAGE_* variables."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moorage.errors import ConfigError
from moorage.settings import RaySettings, Settings


def test_defaults_leave_the_private_cluster_to_ray() -> None:
    settings = Settings.from_environ({"MOORAGE_DATA_DIR": "/tmp/x"})
    assert settings.ray == RaySettings(cpus=None, memory_bytes=None, placement_timeout_s=60.0)
    assert settings.autoscale_period_s == 60.0
    assert (settings.backend, settings.ray_address) == ("local", None)


def test_variables_set_the_private_node_and_the_periods() -> None:
    settings = Settings.from_environ(
        {
            "MOORAGE_DATA_DIR": "/tmp/x",
            "MOORAGE_BACKEND": "ray",
            "MOORAGE_RAY_ADDRESS": "10.0.0.5:6379",
            "MOORAGE_RAY_CPUS": "8",
            "MOORAGE_RAY_MEMORY_GIB": "1.5",
            "MOORAGE_RAY_PLACEMENT_TIMEOUT": "5",
            "MOORAGE_AUTOSCALE_PERIOD": "2",
        }
    )
    assert (settings.backend, settings.ray_address) == ("ray", "10.0.0.5:6379")
    assert settings.ray == RaySettings(cpus=8, memory_bytes=3 * 1024**3 // 2, placement_timeout_s=5.0)
    assert settings.autoscale_period_s == 2.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MOORAGE_RAY_CPUS", "0"),
        ("MOORAGE_RAY_CPUS", "two"),
        ("MOORAGE_RAY_PLACEMENT_TIMEOUT", "0.5"),
        ("MOORAGE_AUTOSCALE_PERIOD", "0"),
        ("MOORAGE_RAY_MEMORY_GIB", "-1"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_environ({"MOORAGE_DATA_DIR": "/tmp/x", name: value})


def test_the_local_backend_never_imports_ray() -> None:
    code = (
        "import sys\n"
        "from moorage.launch.serve import make_backend\n"
        "from moorage.settings import Settings\n"
        "make_backend(Settings.from_environ({'MOORAGE_DATA_DIR': '/tmp/x'}), {})\n"
        "print(sorted(name for name in sys.modules if name == 'ray' or name.startswith('ray.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
