"""The evaluation stage: the official multiple-choice scoring and the tie rule (``scoring``), a split scored
by a trained run (``evaluate``), open-ended answers (``open_ended``) and calibrated probabilities (``calibration``).
"""
