import re

from refmoo.demo import main


def test_demo_prints_both_certificates_and_phi_p_does_not_exceed_phi(capsys):
    assert main(steps=2) == 0
    out = capsys.readouterr().out
    phi, phi_p = (float(x) for x in re.search(
        r"measure φ / φ_P\s*\|\s*(\S+)\s*\|\s*(\S+)", out).groups())
    assert phi_p <= phi
    for label in ("mean (standard FT)", "full-vector MGDA", "bucket-level MGDA"):
        assert label in out
