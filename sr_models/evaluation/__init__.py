"""The evaluation protocol: MATLAB bicubic (`resize`), PSNR/SSIM (`metrics`), benchmark folders and the one HR-to-LR
sample builder (`samples`), the scorer and its report table (`scoring`), LPIPS/FID/IS (`perceptual`, with the
weight files' lookup and download in `perceptual_weights`).

Below train/, export/ and bench/, which all score through it without importing one another. Nothing is imported
here: `metrics` and `samples` load without PyTorch (tests/test_tiers.py), `resize` and `scoring` need it.
"""
