"""The data stage: the official Visual7W files (``visual7w``, ``boxes``, ``grounding``), words (``words``,
``vectors``), the tasks that read them (``tasks``: telling, pointing), the synthetic world written in the same
layout (``synth``), and the examples a model trains on (``loader``).
"""
