"""The README's Slicer-console example runs against the MRML bridge in a real scene (slicer-core).

``slicer.util.getModuleLogic`` needs the application; here it returns a logic whose
``runCohortAnalysis`` is the module logic's one line (``LuDoseResponse.py``: the bridge's
``runCohortAnalysis`` on the scene), so the README's call, its arguments and its result are real.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from readme_blocks import slicer_blocks  # noqa: E402

from LuDoseResponseLib.response.synthetic_cohort import generate_cohort  # noqa: E402


def test_readme_slicer_example(scene_factory, tmp_path):
    from LuDoseResponseMRML import cohort as cohortBridge

    blocks = slicer_blocks()
    assert blocks, "README.md lost its Slicer-console example"
    generate_cohort(seed=13).to_csv(tmp_path / "cohort.csv", index=False)
    scene = scene_factory()

    class Logic:
        def runCohortAnalysis(self, csvPath, outputDir=None, **settings):
            return cohortBridge.runCohortAnalysis(scene, csvPath, outputDir, **settings)

    fake_slicer = types.SimpleNamespace(util=types.SimpleNamespace(getModuleLogic=lambda name: Logic()))
    for block in blocks:
        code = block.replace("/path/", f"{tmp_path}/")
        namespace = {"slicer": fake_slicer}
        exec(compile(code, "README.md", "exec"), namespace)   # noqa: S102 - the README's own example
        nodes = namespace["nodes"]
        assert nodes.analysis["schema"] == "ludoseresponse.analysis/1"
        assert nodes.tables and (tmp_path / "out" / "analysis.json").is_file()
