"""What pip's --report turns into, and the note about packages the workers preload."""

from __future__ import annotations

from typing import Any

from moorage.artifacts.requirements import PlannedInstall, plan_from_report, preload_warnings


def _item(name: str, version: str, download_info: dict[str, Any], *, direct: bool) -> dict[str, Any]:
    return {
        "download_info": download_info,
        "is_direct": direct,
        "requested": True,
        "metadata": {"metadata_version": "2.1", "name": name, "version": version},
    }


def test_report_items_become_pinned_requirements() -> None:
    report = {
        "version": "1",
        "install": [
            _item(
                "six", "1.16.0", {"url": "https://files.example/six.whl", "archive_info": {}}, direct=False
            ),
            _item("tinypkg", "1.2.3", {"url": "file:///src/pkg", "dir_info": {}}, direct=True),
            _item(
                "tool",
                "0.1",
                {
                    "url": "https://git.example/tool.git",
                    "vcs_info": {"vcs": "git", "commit_id": "abc123", "requested_revision": "main"},
                    "subdirectory": "python",
                },
                direct=True,
            ),
            _item(
                "wheel-one", "2.0", {"url": "https://x.example/w-2.0.whl", "archive_info": {}}, direct=True
            ),
        ],
    }

    assert plan_from_report(report) == [
        PlannedInstall("six", "1.16.0", "six==1.16.0"),
        PlannedInstall("tinypkg", "1.2.3", "tinypkg @ file:///src/pkg"),
        PlannedInstall("tool", "0.1", "tool @ git+https://git.example/tool.git@abc123#subdirectory=python"),
        PlannedInstall("wheel-one", "2.0", "wheel-one @ https://x.example/w-2.0.whl"),
    ]


def test_an_empty_report_plans_nothing() -> None:
    assert plan_from_report({"version": "1", "install": []}) == []


def test_changing_a_preloaded_package_is_noted() -> None:
    plan = [
        PlannedInstall("NumPy", "1.0.0", "NumPy==1.0.0"),
        PlannedInstall("Pillow", "9.0.0", "Pillow==9.0.0"),
        PlannedInstall("six", "1.16.0", "six==1.16.0"),
    ]

    warnings = preload_warnings(plan)

    assert len(warnings) == 2
    assert warnings[0].startswith(
        "requirements.txt: NumPy==1.0.0 is requested, but moorage's workers import NumPy"
    )
    assert "keeps the version already imported" in warnings[0]
    assert warnings[1].startswith("requirements.txt: Pillow==9.0.0 is requested")
