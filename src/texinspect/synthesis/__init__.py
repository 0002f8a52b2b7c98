"""Artificial defects drawn on normal images (masks, anomaly sources, the papers' blending).

What every family trains its defect branch on, and what the synthetic validation scores with.
"""
