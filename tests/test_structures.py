import os

import numpy as np
import pytest

from dosmatgen_core.labels.labeller import label_structure
from dosmatgen_core.structures import Crystal, StructureError, read_structure

NACL = """data_NaCl
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
_symmetry_Int_Tables_number 225
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na1 Na 0 0 0 1
Cl1 Cl 0.5 0.5 0.5 1
"""


def test_reads_a_good_cif_with_symmetry():
    s = read_structure(NACL)
    assert s.composition.reduced_formula == "NaCl"
    assert len(s) == 8  # the conventional cell, expanded by the symmetry operations


def test_round_trip_through_model_arrays():
    s = read_structure(NACL)
    c = Crystal.from_structure(s)
    back = c.to_structure()
    assert np.allclose(back.lattice.matrix, s.lattice.matrix)
    assert [x.symbol for x in back.species] == [x.symbol for x in s.species]


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("data_x\n_cell_length_a 5\nthis is not a cif\n", "could not read the CIF file: it lacks _cell_length_b, _cell_length_c"),
    (NACL.replace("_atom_site_fract_x", "_atom_site_fract_x\n_atom_site_fract_q"), "could not read the CIF file"),
    (NACL.replace("Cl1 Cl 0.5 0.5 0.5 1", "Cl1 Cl 0.5 0.5 0.5 0.5"), "partial occupancy"),
    (NACL.replace("Cl1 Cl 0.5", "Xx1 Xx 0.5"), "could not read|unknown element"),
])
def test_bad_cifs_give_clear_errors(text, words):
    with pytest.raises(StructureError, match=words):
        read_structure(text, source="upload.cif")


@pytest.mark.parametrize("text", ["", NACL.replace("Cl1 Cl 0.5 0.5 0.5 1", "Cl1 Cl 0.5 0.5 0.5 0.5"),
                                  NACL.replace("Cl1 Cl 0.5", "Xx1 Xx 0.5")])
def test_labeller_records_bad_structures_as_failed_without_a_partial_label(text):
    line = label_structure("bad-1", text)
    assert set(line) == {"material_id", "failed"}
    assert line["material_id"] == "bad-1"
    assert line["failed"]


def test_labeller_refuses_lanthanides_with_the_reason():
    line = label_structure("ce-1", NACL.replace("Na1 Na", "Ce1 Ce"))
    assert "Ce" in line["failed"] and "site_dos" not in line


def test_spglibs_retry_messages_stay_off_the_logs():
    """The walk: the app's log held 'spglib: ssm_get_exact_positions failed' lines from symmetry
    searches whose answers stood, and pymatgen's 'No Pauling electronegativity for Ar' from ordering
    a formula; importing the package turns both off."""
    import subprocess
    import sys
    code = ("import dosmatgen_core\nimport numpy as np\nfrom pymatgen.core import Lattice, Structure\n"
            "from pymatgen.symmetry.analyzer import SpacegroupAnalyzer\nrng = np.random.default_rng(0)\n"
            "for _ in range(200):\n"
            "    s = Structure(Lattice(rng.random((3, 3)) * 4 + np.eye(3) * 3), ['Cu'] * 4, rng.random((4, 3)))\n"
            "    try:\n        SpacegroupAnalyzer(s, symprec=0.3).get_space_group_symbol()\n"
            "    except Exception:\n        pass\n"
            "from pymatgen.core import Composition\nComposition('ArCu3').reduced_formula\n")
    env = {k: v for k, v in os.environ.items() if k != "SPGLIB_WARNING"}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    loud = subprocess.run([sys.executable, "-c", code.replace("import dosmatgen_core\n", "")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and "spglib" not in quiet.stderr and "Pauling" not in quiet.stderr
    assert "spglib" in loud.stderr and "Pauling" in loud.stderr      # the same work prints without it


def test_a_cif_ase_cannot_read_keeps_no_order_and_a_strict_read_says_so():
    """pymatgen reads 'fe' as Fe, ASE's reader fails on it: the file's order cannot be kept. A file
    a person gives is read strictly (checks.read_structure_bytes), and so is a stored candidate;
    a label's MP CIF keeps pymatgen's."""
    from pathlib import Path

    import pytest as _pytest

    from dosmatgen_core.structures import StructureError, read_structure
    text = (Path(__file__).parent / "bad_inputs" / "misspelled_element.cif").read_text().replace("Sx1 Sx", "Fe1 fe")
    assert len(read_structure(text, "cif", "x.cif")) == 5
    with _pytest.raises(StructureError, match=r"^x.cif: its atoms cannot be kept in the file's order"):
        read_structure(text, "cif", "x.cif", strict_order=True)
    # a stored candidate's rows are its sites': one whose order cannot be kept is refused, not misread
    from dosmatgen_core.candidates.runs import structure_of
    with _pytest.raises(StructureError, match=r"^candidate 3: its atoms cannot be kept in the file's order"):
        structure_of({"rank": 3, "cif": text})
