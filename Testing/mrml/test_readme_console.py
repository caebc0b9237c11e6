"""The README's Slicer-console examples run against the real module logic in a real scene (slicer-core).

``LuDoseResponse.py`` is imported with stand-ins for the application-only modules (``module_stubs``), so
``LuDoseResponseLogic`` is the module's own class. The console's ``slicer.util.getModuleLogic`` and
``slicer.util.getNode`` need the application; here they return that logic (on the test scene, with a
stand-in DICOM database) and the scene's node of that name. The scene holds cycle 1 of the tiny phantom
P07 under the names the README uses ("SPECT 24h", "SPECT 96h", "SPECT 168h", "CT", "Tumours", "Baseline",
"Follow-up 1", "Follow-up 2"), and ``/path/cohort.csv`` is a synthetic cohort.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from module_stubs import importModuleFile
from phantom_scene import HOURS, sceneInputs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from readme_blocks import slicer_blocks  # noqa: E402

from LuDoseResponseLib.response.synthetic_cohort import generate_cohort  # noqa: E402

README_NAMES = {"CT": "CT", "tumours c1": "Tumours", "follow-up 0": "Baseline", "follow-up 1": "Follow-up 1",
                "follow-up 2": "Follow-up 2", **{f"SPECT c1 {h:g}h": f"SPECT {h:g}h" for h in HOURS}}


def runSlicerBlock(code: str, scene, database, folder: Path) -> dict:
    """Execute one README block as Slicer's console would; returns its namespace."""
    module = importModuleFile()
    logic = module.LuDoseResponseLogic(scene=scene, dicomDatabase=database)

    def getNode(name):
        node = scene.GetFirstNodeByName(name)
        if node is None:
            raise KeyError(f"no node named {name!r} in the scene")
        return node

    util = types.SimpleNamespace(getModuleLogic=lambda name: logic if name == "LuDoseResponse" else None,
                                 getNode=getNode)
    namespace = {"slicer": types.SimpleNamespace(util=util)}
    exec(compile(code.replace("/path/", f"{folder}/"), "README.md", "exec"), namespace)  # noqa: S102
    return namespace


def test_readme_slicer_examples(phantoms, scene_factory, tmp_path):
    blocks = slicer_blocks()
    assert blocks, "README.md lost its Slicer-console examples"
    for i, block in enumerate(blocks):
        folder = tmp_path / f"block{i}"
        folder.mkdir()
        generate_cohort(seed=13).to_csv(folder / "cohort.csv", index=False)
        scene = scene_factory()
        p, manifest, _ = phantoms["P07"]
        _, _, held = sceneInputs(scene, p, manifest)
        for old, new in README_NAMES.items():
            scene.GetFirstNodeByName(old).SetName(new)
        namespace = runSlicerBlock(block, scene, held.database, folder)
        nodes = namespace["nodes"]
        if hasattr(nodes, "analysis"):   # a cohort analysis
            assert nodes.analysis["schema"] == "ludoseresponse.analysis/1"
            assert nodes.tables and (folder / "out" / "analysis.json").is_file()
        else:                            # a dosimetry run
            assert nodes.tumoursTable.GetNumberOfRows() == len(p.tumours)
            assert nodes.doseVolumes and nodes.timeActivityChart.GetNumberOfPlotSeriesNodes() == len(p.tumours)
