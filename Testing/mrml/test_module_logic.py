"""``LuDoseResponseLogic`` (the console API in LuDoseResponse.py) run headless on a real scene.

The module file is imported with stand-ins for the three application-only modules it imports
(``module_stubs``); the logic's methods, the bridge and the library are the real ones. References: the
command line's outputs on the same phantom, and the module's own requirements file.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from module_stubs import importModuleFile
from phantom_scene import sceneInputs

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.pipeline.study import Settings


@pytest.fixture(scope="module")
def module():
    return importModuleFile()


def test_logic_runs_the_phantom_like_the_command_line(module, phantoms, scene, tmp_path):
    p, manifest, cli = phantoms["P07"]
    cycles, followUps, keep = sceneInputs(scene, p, manifest)
    logic = module.LuDoseResponseLogic(scene=scene)
    nodes = logic.runDosimetry("P07", cycles, followUps, grade=p.grade, pvc="none")
    expected = pd.read_csv(cli / "tumours.csv")
    table = nodes.tumoursTable.GetTable()
    got = [table.GetValueByName(r, "dose_gy").ToDouble() for r in range(table.GetNumberOfRows())]
    np.testing.assert_allclose(got, expected["dose_gy"], rtol=1e-9)
    cohort = logic.writeCohortCsvFromScene(tmp_path / "cohort.csv")
    assert cohort.read_text() == (cli / "tumours.csv").read_text()
    del keep


def test_logic_reads_dicom_through_its_database(module, phantoms, scene):
    p, manifest, _ = phantoms["P07"]
    cycles, _, keep = sceneInputs(scene, p, manifest)
    spectNode = cycles[0].spect[0].volumeNode
    withoutDatabase = module.LuDoseResponseLogic(scene=scene, dicomDatabase=None)
    assert withoutDatabase.spectFromNode(spectNode).acquiredAt is None   # slicer.dicomDatabase is absent here
    logic = module.LuDoseResponseLogic(scene=scene, dicomDatabase=keep.database)
    spect = logic.spectFromNode(spectNode)
    assert spect.acquiredAt == p.cycle_dates[0] + timedelta(hours=24) and spect.units == "counts"
    cycle = logic.cycleFromNodes(1, [c.volumeNode for c in cycles[0].spect], cycles[0].segmentationNode)
    assert cycle.administeredAt == p.cycle_dates[0]
    # the panel's record of a cycle, filled from DICOM as the "Read times and activity" button does
    pack = module.LuDoseResponseCycle(segmentation=cycles[0].segmentationNode)
    for node in [c.volumeNode for c in cycles[0].spect]:
        pack = logic.cycleParametersWithSpect(pack, node)
    pack.administeredAt, pack.activityMBq = "", 0.0
    pack = logic.cycleParametersFromDicom(pack)
    assert pack.administeredAt == p.cycle_dates[0].isoformat()
    assert [s.acquiredAt for s in pack.spects] == [(p.cycle_dates[0] + timedelta(hours=h)).isoformat()
                                                   for h in (24, 96, 168)]


def test_parameter_node_inputs_and_settings(module, phantoms, scene):
    p, manifest, _ = phantoms["P07"]
    cycles, followUps, keep = sceneInputs(scene, p, manifest)
    logic = module.LuDoseResponseLogic(scene=scene)
    parameters = module.LuDoseResponseParameterNode()
    assert (parameters.doseMethod, parameters.pvc, parameters.psfFwhmMm, parameters.integration) == (
        Settings().dose_method, Settings().pvc, Settings().psf_fwhm_mm, Settings().integration)
    parameters.patientId, parameters.pvc = "P07", "none"
    parameters.cycles = [module.LuDoseResponseCycle(
        spects=[module.LuDoseResponseSpect(volume=s.volumeNode, acquiredAt=s.acquiredAt.isoformat(),
                                           durationS=s.durationS, units=s.units) for s in c.spect],
        administeredAt=c.administeredAt.isoformat(), activityMBq=c.activityMBq,
        calibrationCpsPerMbq=c.calibrationCpsPerMbq, ct=c.ctVolumeNode, segmentation=c.segmentationNode)
        for c in cycles]
    parameters.followUps = [module.LuDoseResponseFollowUp(segmentation=f.segmentationNode, date=f.date.isoformat())
                            for f in followUps]
    parsed, parsedFollowUps = logic.inputsFromParameterNode(parameters)
    assert [c.administeredAt for c in parsed] == [c.administeredAt for c in cycles]
    assert [s.acquiredAt for s in parsed[1].spect] == [s.acquiredAt for s in cycles[1].spect]
    assert [f.date for f in parsedFollowUps] == list(p.followup_dates)
    nodes = logic.runDosimetryFromParameterNode(parameters)
    assert nodes.study.settings == Settings(pvc="none")

    parameters.cycles[0].spects[0].acquiredAt = "27.04.2019 09:30"
    with pytest.raises(InputError, match=r"cycle 1, SPECT 'SPECT c1 24h': '27.04.2019 09:30' is not a date"):
        logic.inputsFromParameterNode(parameters)
    with pytest.raises(InputError, match="unknown dosimetry option"):
        logic.dosimetrySettings(fwhm=11)
    with pytest.raises(InputError, match="pvc must be one of"):
        logic.dosimetrySettings(pvc="yes")
    with pytest.raises(InputError, match="not a date like"):
        logic.followUp("20.02.2019", followUps[0].segmentationNode)
    assert logic.followUp(date(2019, 2, 20), followUps[0].segmentationNode).date == date(2019, 2, 20)
    del keep


def test_requirements_come_from_the_one_file(module):
    from LuDoseResponseMRML import requirements

    logic = module.LuDoseResponseLogic()
    assert logic.requirementsPath() == module.pathlib.Path(module.__file__).parent / "Resources" / "requirements.txt"
    listed = requirements.readRequirements(logic.requirementsPath())
    assert [requirements.importName(r) for r in listed] == ["pandas", "matplotlib"]
    assert logic.missingRequirements() == []  # both are installed in the test environment
    assert requirements.missingRequirements(["pandas>=2.0", "surely-not-installed-ludr>=1"]) == [
        "surely-not-installed-ludr>=1"]
    source = module.pathlib.Path(module.__file__).read_text(encoding="utf-8")
    for requirement in listed:
        assert requirement not in source, f"{requirement} is listed in the code too; requirements.txt is the one list"
