"""Synthetic "7W world": an offline dataset in the exact Visual7W layout (telling, pointing, grounding boxes).

Why it exists: this project must run end to end without internet, and every stage must be tested on the official
file format. The world asks what real Visual7W asks and is built so that *attention is needed*: each image holds
several objects, each question refers to one of them (or counts some), answers are balanced so that a blind model
stays near 25 %, and the distractors are other things the image shows, so that a model seeing the image but not
the question stays near 25 % too. Two kinds of scene:

  shapes.py      coloured shapes with fill patterns and a window (colour, shape, position, fill, count, time)
  pages.py       digits and letters written on paper (read, find by content, ink colour, count)
  questions.py   what both share: the scene record, the layout, the rules that make questions fair
  draw_shapes.py, draw_pages.py   the pixels
  pointing.py    the pointing ("which") file over the same images
  world.py       generation and writing, atomically and only over files the generator wrote
"""

from .world import SYNTH_VERSION, generate, write_dataset

__all__ = ["SYNTH_VERSION", "generate", "write_dataset"]
