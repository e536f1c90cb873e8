"""What people look at: one PNG per question with its attention (``panels``, the ``inspect`` stage), the
explorer of a whole split (``explorer``, its page in ``explorer_static/``) and the live page (``serve``).
"""
