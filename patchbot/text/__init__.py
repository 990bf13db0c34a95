"""Every text a person reads: templates filled in (render.py), untrusted text made harmless
(safe_text.py).
"""
