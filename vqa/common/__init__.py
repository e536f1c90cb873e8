"""Helpers every stage shares: user errors (``errors``), atomic file writes (``files``), progress lines
(``progress``) and the allocator setting of the entry points (``malloc``).
"""
