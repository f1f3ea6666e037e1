"""One Ray version everywhere: the cluster's images and the client must match exactly (Ray Client
refuses a mismatch). The pin is ``aframe_flow.clusters.manifests.RAY_VERSION``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aframe_flow.clusters import ClusterSpec, ray_cluster
from aframe_flow.clusters.manifests import RAY_VERSION

ROOT = Path(__file__).resolve().parents[3]


def test_the_pin_matches_constraints_the_installed_client_and_the_manifests():
    import ray

    pins = re.findall(r"^ray(?:\[[^\]]*\])?==(\S+)", (ROOT / "constraints.txt").read_text(), re.M)
    assert pins == [RAY_VERSION]
    assert ray.__version__ == RAY_VERSION
    assert ray_cluster(ClusterSpec(name="x"))["spec"]["rayVersion"] == RAY_VERSION


IMAGE_DEFINITIONS = sorted(ROOT.glob("projects/**/*.def")) + sorted(
    p for p in ROOT.glob("projects/**/*.Containerfile") if "pip install" in p.read_text()
)


def test_the_oci_training_image_is_among_the_checked_definitions():
    assert ROOT / "projects/images/train.Containerfile" in IMAGE_DEFINITIONS


@pytest.mark.parametrize("definition", IMAGE_DEFINITIONS, ids=str)
def test_images_install_the_pinned_ray(definition):
    """An image names that exact Ray, or installs with constraints.txt (which pins it)."""
    text = definition.read_text()
    named = re.findall(r"\bray(?:\[[^\]]*\])?==(\d\S*)", text)  # version pins
    assert named == [RAY_VERSION] * len(named)
    assert named or re.search(r"-c\s+\S*constraints\.txt", text), (
        f"{definition} installs an unpinned Ray: add ray=={RAY_VERSION} or -c constraints.txt"
    )


def test_a_ray_image_of_another_version_is_refused():
    ClusterSpec(name="x", image=f"rayproject/ray:{RAY_VERSION}-py311-gpu")
    with pytest.raises(ValueError, match=f"runs Ray 2.9.0, but this aframe pins Ray {RAY_VERSION}"):
        ClusterSpec(name="x", image="rayproject/ray:2.9.0-py311-gpu")
